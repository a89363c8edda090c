"""ArxivQA (MMInstruction/ArxivQA): multiple-choice questions on arXiv figures.

Upstream ships ``arxivqa.jsonl`` (id, image = path inside ``images.tgz``, question,
options ``["A. ...", ...]``, label, rationale) and the image archive. Locally: the jsonl
file with the extracted ``images/`` folder beside it. From the hub both files are
downloaded and the archive extracted once.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import (
    RowContext,
    SourceSpec,
    load_rows,
    option_letter,
    split_sentences,
    strip_option,
)

HUB_ID = "MMInstruction/ArxivQA"


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("id")
    return str(value) if isinstance(value, str | int) and str(value) else f"{split}/{index:07d}"


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    question = ctx.text(row, "question")
    options = ctx.text_list(row, "options")
    label = ctx.text(row, "label")
    letter = option_letter(label)
    if letter is None or ord(letter) - ord("A") >= len(options):
        raise ctx.fail("label", "bad_value", f"label {label!r} is not a letter among {len(options)} options")
    rationale = ctx.text(row, "rationale", empty_reason="empty_trace")
    image = ctx.image(ctx.get(row, "image"), "image")
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="structured", skills=[],
        question=question, choices=[strip_option(o) for o in options], input_images=[image],
        steps=[], final_answer=letter, answer_type="choice", text_cot=split_sentences(rationale),
        meta={"split": ctx.split},
    )


def hub_rows(spec: SourceSpec, split: str, revision: str | None) -> Iterator[tuple[dict[str, Any], RowContext]]:
    """Download ``arxivqa.jsonl`` and ``images.tgz`` (at ``revision``) and read them as a local copy."""
    from huggingface_hub import hf_hub_download

    jsonl = Path(hf_hub_download(HUB_ID, "arxivqa.jsonl", repo_type="dataset", revision=revision))
    archive = Path(hf_hub_download(HUB_ID, "images.tgz", repo_type="dataset", revision=revision))
    marker = jsonl.parent / ".images_extracted"
    if not marker.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(jsonl.parent, filter="data")
        marker.touch()
    yield from load_rows(spec, split, local_path=jsonl)


SPEC = SourceSpec(
    name="arxivqa", hub_id=HUB_ID, configs=(None,), splits={"train": "train", "eval": "train"},
    uni_task="structured", convert=convert, record_id=record_id, local_format="json",
    hub_loader=hub_rows, notes="1K PeRPO prompts; Omni-Bench structured (100), disjoint.",
)
