"""ChartQA (HuggingFaceM4/ChartQA): questions on charts with short answers.

Upstream row: ``image``, ``query``, ``label`` (list of accepted answers; the first is kept),
``human_or_machine``.
"""

from __future__ import annotations

from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec, answer_type_of


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    query = ctx.text(row, "query")
    labels = ctx.text_list(row, "label")
    if not labels or not labels[0]:
        raise ctx.fail("label", "empty_field", "no answer")
    origin = row.get("human_or_machine")
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="structured", skills=[], question=query,
        choices=[], input_images=[ctx.image(ctx.get(row, "image"), "image")], steps=[],
        final_answer=labels[0], answer_type=answer_type_of(labels[0], []), text_cot=None,
        meta={"labels": labels, "human_or_machine": origin if isinstance(origin, int | str) else None,
              "split": ctx.split},
    )


SPEC = SourceSpec(
    name="chartqa", hub_id="HuggingFaceM4/ChartQA", configs=(None,),
    splits={"train": "train", "eval": "test"}, uni_task="structured", convert=convert,
    notes="Omni-Bench structured (100) from the test split.",
)
