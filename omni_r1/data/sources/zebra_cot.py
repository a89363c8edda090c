"""Zebra-CoT (multimodal-reasoning-lab/Zebra-CoT): interleaved visual chains of thought.

Upstream row: ``Question`` (text with ``<image_start>[problem_image_k]<image_end>``
placeholders), ``Text Reasoning Trace`` ("THOUGHT k: ..." steps with
``<image_start>[reasoning_image_k]<image_end>`` placeholders), ``Final Answer``, and image
columns ``problem_image_1..k``, ``reasoning_image_1..n``. One hub config per category.

Zebra-CoT has no explicit atomic actions: each step keeps its free-form image with
``action=None``; no action is invented. A THOUGHT holding several images becomes several
steps, each ending at its image.
"""

from __future__ import annotations

import re
from typing import Any

from omni_r1.data.records import Record, RecordStep
from omni_r1.data.sources.base import RowContext, SourceSpec, answer_type_of

PLACEHOLDER_RE = re.compile(r"<image_start>\[(?P<name>(?:problem|reasoning)_image_\d+)\]<image_end>")
THOUGHT_RE = re.compile(r"THOUGHT\s*\d+\s*:\s*")
HUB_ID = "multimodal-reasoning-lab/Zebra-CoT"

# Category keyword -> Uni-Task (first match wins; hub config names are the categories).
CATEGORY_TASKS: tuple[tuple[str, str], ...] = (
    ("visual search", "natural"), ("3d", "natural"), ("embodied", "vision_operational"),
    ("chart", "structured"), ("graph", "structured"), ("geometry", "diagrammatic"),
    ("physics", "diagrammatic"), ("math", "diagrammatic"), ("scientific", "diagrammatic"),
    ("game", "vision_operational"), ("chess", "vision_operational"), ("maze", "vision_operational"),
    ("puzzle", "vision_operational"), ("logic", "vision_operational"),
)


def uni_task_of(category: str | None) -> str:
    lowered = (category or "").lower()
    return next((task for key, task in CATEGORY_TASKS if key in lowered), "natural")


def _image(row: dict[str, Any], name: str, ctx: RowContext) -> bytes:
    if row.get(name) is None:
        raise ctx.fail(name, "missing_image", "placeholder names an image that is not in the row")
    return ctx.image(row[name], name)


def _trace_steps(trace: str, row: dict[str, Any], ctx: RowContext) -> list[RecordStep]:
    steps: list[RecordStep] = []
    for thought in (t for t in THOUGHT_RE.split(trace) if t.strip()):
        position = 0
        for match in PLACEHOLDER_RE.finditer(thought):
            text = " ".join(thought[position : match.start()].split())
            steps.append(RecordStep(rationale=text, image=_image(row, match.group("name"), ctx)))
            position = match.end()
        tail = " ".join(PLACEHOLDER_RE.sub(" ", thought[position:]).split())
        if tail:
            steps.append(RecordStep(rationale=tail))
    return steps


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    question_raw = ctx.text(row, "Question")
    trace = ctx.text(row, "Text Reasoning Trace", empty_reason="empty_trace")
    answer = ctx.text(row, "Final Answer")
    names = [m.group("name") for m in PLACEHOLDER_RE.finditer(question_raw)]
    if not names:  # no placeholder: every problem image present, in order
        names = sorted((k for k in row if k.startswith("problem_image_") and row[k] is not None),
                       key=lambda k: int(k.rsplit("_", 1)[1]))
    input_images = [_image(row, name, ctx) for name in names]
    steps = _trace_steps(trace, row, ctx)
    if not steps:
        raise ctx.fail("Text Reasoning Trace", "empty_trace", "trace has no steps")
    question = " ".join(PLACEHOLDER_RE.sub(" ", question_raw).split())
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task=uni_task_of(ctx.config), skills=[],
        question=question, choices=[], input_images=input_images, steps=steps,
        final_answer=answer, answer_type=answer_type_of(answer, []), text_cot=None,
        meta={"config": ctx.config, "split": ctx.split, "index": ctx.index},
    )


SPEC = SourceSpec(
    name="zebra_cot", hub_id=HUB_ID, configs=(None,), splits={"train": "train"},
    uni_task="natural", convert=convert, local_format="parquet",
    notes="PeSFT (Omni-R1) and ~10% of the PeRPO prompts.",
)
