"""ViC-Bench (meituan/ViC-Bench): visual-interleaved chain-of-thought tasks.

Four hub splits: ``counting``, ``maze``, ``puzzle``, ``embodied``, read in turn. Each row
holds an image, a question and its answer; the field names accepted are ``question``
(or ``query``/``prompt``), ``answer`` (or ``label``/``ground_truth``), ``image``, and an
optional ``id``. These names follow the public card as far as it documents them; a local
copy in the same layout (``<split>.parquet`` files) is read the same way.
"""

from __future__ import annotations

from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec, answer_type_of

QUESTION_FIELDS = ("question", "query", "prompt")
ANSWER_FIELDS = ("answer", "label", "ground_truth")
SPLITS = ("counting", "maze", "puzzle", "embodied")


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("id")
    return f"{split}/{value}" if isinstance(value, str | int) and str(value) else f"{split}/{index:07d}"


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str:
    return next((name for name in names if name in row), names[0])


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    question = ctx.text(row, _first(row, QUESTION_FIELDS))
    answer_field = _first(row, ANSWER_FIELDS)
    answer = ctx.get(row, answer_field)
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise ctx.fail(answer_field, "wrong_type", f"expected text, got {type(answer).__name__}")
    if not answer.strip():
        raise ctx.fail(answer_field, "empty_field", "text is empty")
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="vision_operational", skills=[],
        question=question, choices=[], input_images=[ctx.image(ctx.get(row, "image"), "image")],
        steps=[], final_answer=answer.strip(), answer_type=answer_type_of(answer.strip(), []),
        text_cot=None, meta={"split": ctx.split},
    )


SPEC = SourceSpec(
    name="vicbench", hub_id="meituan/ViC-Bench", configs=(None,),
    splits={"eval": ",".join(SPLITS)}, uni_task="vision_operational", convert=convert,
    record_id=record_id, notes="Omni-Bench vision-operational (300 over the four splits).",
)
