"""V* Bench (craigwu/vstar_bench): visual search in high-resolution natural images.

Upstream ships ``test_questions.jsonl`` (191 rows: ``image`` path relative to the file,
``text`` with inline options ``(A) ... (B) ...``, ``label`` letter, ``category``,
``question_id``) beside the image folders. From the hub the repository snapshot is
downloaded and read as a local copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omni_r1.data.records import Record
from omni_r1.data.sources.base import RowContext, SourceSpec, load_rows, option_letter

HUB_ID = "craigwu/vstar_bench"
OPTION_RE = re.compile(r"\(([A-Z])\)\s*(.+?)(?=\s*\([A-Z]\)|\n|$)")


def record_id(row: dict[str, Any], index: int, split: str) -> str:
    value = row.get("question_id")
    return str(value) if isinstance(value, str | int) and str(value) != "" else f"{split}/{index:07d}"


def convert(row: dict[str, Any], ctx: RowContext) -> Record:
    text = ctx.text(row, "text")
    label = ctx.text(row, "label")
    choices = [option.strip() for _, option in OPTION_RE.findall(text)]
    letter = option_letter(label)
    if letter is None or ord(letter) - ord("A") >= max(len(choices), 1):
        raise ctx.fail("label", "bad_value", f"label {label!r} is not an option letter")
    question = text.split("(A)")[0].strip() if choices else text
    return Record(
        id=ctx.record_id, source=ctx.source, uni_task="natural", skills=[], question=question,
        choices=choices, input_images=[ctx.image(ctx.get(row, "image"), "image")], steps=[],
        final_answer=letter, answer_type="choice", text_cot=None,
        meta={"category": ctx.optional_text(row, "category"), "split": ctx.split},
    )


def hub_rows(spec: SourceSpec, split: str, revision: str | None) -> Iterator[tuple[dict[str, Any], RowContext]]:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(HUB_ID, repo_type="dataset", revision=revision))
    yield from load_rows(spec, split, local_path=folder / "test_questions.jsonl")


SPEC = SourceSpec(
    name="vstar", hub_id=HUB_ID, configs=(None,), splits={"eval": "test"}, uni_task="natural",
    convert=convert, record_id=record_id, local_format="json", hub_loader=hub_rows,
    notes="Omni-Bench natural (100 of 191).",
)
