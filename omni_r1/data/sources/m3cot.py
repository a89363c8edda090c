"""M3CoT (LightChen2333/M3CoT): multi-domain multiple-choice questions with text rationales.

Upstream row: id, category, image_id, question, choices (list), context, answer (letter),
rationale, split, image, domain, topic. The rationale is a text-only chain of thought: it
becomes ``text_cot`` (one entry per line or sentence), the source of the Omni-R1-Zero
bootstrap; the record has no interleaved steps.
"""

from __future__ import annotations

from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec, option_letter, split_sentences

DOMAIN_TASKS = {"commonsense": "natural", "science": "diagrammatic", "mathematics": "diagrammatic"}


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("id")
    return str(value) if isinstance(value, str | int) and str(value) else f"{split}/{index:07d}"


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    question = ctx.text(row, "question")
    context = ctx.optional_text(row, "context")
    choices = ctx.text_list(row, "choices")
    answer = ctx.text(row, "answer")
    letter = option_letter(answer)
    if letter is None or ord(letter) - ord("A") >= len(choices):
        raise ctx.fail("answer", "bad_value", f"answer {answer!r} is not a letter among {len(choices)} choices")
    rationale = ctx.text(row, "rationale", empty_reason="empty_trace")
    image = ctx.image(ctx.get(row, "image"), "image")
    domain = ctx.optional_text(row, "domain")
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task=DOMAIN_TASKS.get(domain, "natural"),
        skills=[], question=f"{context}\n{question}".strip(), choices=choices,
        input_images=[image], steps=[], final_answer=letter, answer_type="choice",
        text_cot=split_sentences(rationale),
        meta={"domain": domain, "topic": ctx.optional_text(row, "topic"), "split": ctx.split},
    )


SPEC = SourceSpec(
    name="m3cot", hub_id="LightChen2333/M3CoT", configs=(None,),
    splits={"train": "train", "eval": "test"}, uni_task="natural", convert=convert,
    record_id=record_id, notes="Text-only CoT subset for the Omni-R1-Zero bootstrap.",
)
