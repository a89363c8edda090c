"""MathVista (AI4Math/MathVista, split ``testmini``, 1000 rows): visual math reasoning.

Upstream row: pid, question, image (path), decoded_image (the image), choices (list or
None), unit, precision, answer, question_type (``multi_choice`` | ``free_form``),
answer_type (``text`` | ``integer`` | ``float`` | ``list``), metadata, query. For
multiple-choice rows the answer is the option text.
"""

from __future__ import annotations

from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec

ANSWER_TYPES = {"integer": "number", "float": "number", "text": "text", "list": "text"}


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("pid")
    return str(value) if isinstance(value, str | int) and str(value) else f"{split}/{index:07d}"


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    question = ctx.text(row, "question")
    answer = ctx.text(row, "answer")
    choices = ctx.text_list(row, "choices", required=False)
    question_type = ctx.text(row, "question_type")
    answer_type = "choice" if question_type == "multi_choice" else ANSWER_TYPES.get(
        ctx.optional_text(row, "answer_type"), "text")
    image = ctx.image(ctx.get(row, "decoded_image"), "decoded_image")
    precision = row.get("precision")
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="diagrammatic", skills=[],
        question=question, choices=choices, input_images=[image], steps=[],
        final_answer=answer, answer_type=answer_type, text_cot=None,
        meta={"unit": ctx.optional_text(row, "unit"), "question_type": question_type,
              "precision": precision if isinstance(precision, int | float) else None,
              "query": ctx.optional_text(row, "query"), "split": ctx.split},
    )


SPEC = SourceSpec(
    name="mathvista", hub_id="AI4Math/MathVista", configs=(None,), splits={"eval": "testmini"},
    uni_task="diagrammatic", convert=convert, record_id=record_id,
    notes="Omni-Bench diagrammatic (100 of testmini).",
)
