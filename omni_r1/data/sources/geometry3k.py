"""Geometry3K (hiyouga/geometry3k): geometry problems with a diagram and a numeric answer.

Upstream row: ``images`` (list of images), ``problem`` (text starting with ``<image>``),
``answer``; some copies also carry ``id``, ``choices`` and ``ground_truth``.
"""

from __future__ import annotations

from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec, answer_type_of

HUB_ID = "hiyouga/geometry3k"


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("id")
    return f"{split}/{value}" if isinstance(value, str | int) and str(value) else f"{split}/{index:07d}"


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    problem = ctx.text(row, "problem")
    answer = ctx.text(row, "answer")
    images = ctx.get(row, "images")
    if not isinstance(images, list):
        raise ctx.fail("images", "wrong_type", f"expected a list of images, got {type(images).__name__}")
    if not images:
        raise ctx.fail("images", "missing_image", "problem has no image")
    choices = ctx.text_list(row, "choices", required=False)
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="diagrammatic", skills=[],
        question=" ".join(problem.replace("<image>", " ").split()), choices=choices,
        input_images=[ctx.image(image, f"images[{i}]") for i, image in enumerate(images)],
        steps=[], final_answer=answer, answer_type=answer_type_of(answer, choices),
        text_cot=None, meta={"split": ctx.split},
    )


SPEC = SourceSpec(
    name="geometry3k", hub_id=HUB_ID, configs=(None,), splits={"train": "train", "eval": "test"},
    uni_task="diagrammatic", convert=convert, record_id=record_id,
    notes="250 PeRPO prompts; Omni-Bench diagrammatic (100) from the test split.",
)
