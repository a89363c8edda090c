"""The released Omni-Bench (``ModalityDance/Omni-Bench``) read in its exact schema.

The official evaluation script (``omni-bench/vllm_eval.py`` of ModalityDance/Omni-R1) reads one
or more parquet files with the columns ``question``, ``image`` and ``answer``; other columns are
kept as metadata. ``image`` holds a base64 string, a ``data:image/...;base64,`` URL, a list of
them, or the placeholder ``<TLTS>`` where an image was removed. ``<image>`` placeholders in the
question mark where images go (:func:`omni_r1.model.packing.official_prompt_text` aligns them).

Each row becomes a :class:`~omni_r1.data.records.Record`: the question without placeholders
(for the project's own prompt), the question as published in ``meta["official_question"]`` (for
the official wrapper), the decoded input images as PNG and the answer. The Omni-Bench slice
comes from a metadata column naming the source benchmark (``category``, ``source``, ``dataset``,
``task`` or ``slice``) when there is one, else the record's slice is ``unsliced``.

Where it differs from the official script: that script silently skips rows whose images do not
decode and evaluates ``<TLTS>``-only rows without an image; here such rows (and files without a
required column) are bad records: a :class:`DataError` naming the file, row and field, or, with
``on_bad_record: skip``, a skip counted by reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from omni_r1.data.records import UNI_TASKS, DataError, Record, to_png
from omni_r1.data.sources.base import answer_type_of
from omni_r1.trajectory import IMAGE_SLOT

HUB_ID = "ModalityDance/Omni-Bench"
REQUIRED_COLUMNS = ("question", "image", "answer")
REMOVED_IMAGE = "<TLTS>"
SLICE_COLUMNS = ("slice", "category", "source", "dataset", "task")
UNSLICED = "unsliced"
SLICE_PATTERNS = (  # source-benchmark name -> Omni-Bench slice (paper Table 1)
    (re.compile(r"v\*|vstar|v_star", re.I), "natural"),
    (re.compile(r"arxiv|chart", re.I), "structured"),
    (re.compile(r"geometry|geo3k|mathvista", re.I), "diagrammatic"),
    (re.compile(r"vic|maze|puzzle|counting|embodied", re.I), "vision_operational"),
)


def parquet_files(path: Path | str) -> list[Path]:
    """The parquet file itself, or every ``*.parquet`` under a folder, sorted."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(str(root), "-", "path", "missing_file", "no such file or folder")
    files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not files:
        raise DataError(str(root), "-", "path", "missing_file", "no .parquet files")
    return files


def hub_folder(hub_id: str = HUB_ID) -> Path:
    """A local snapshot of the released bench's parquet files (``huggingface_hub``)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(hub_id, repo_type="dataset", allow_patterns=["*.parquet"]))


def decode_image(value: str, file: str, record_id: str, field: str) -> bytes:
    """A base64 string or data URL → PNG bytes; anything undecodable is a ``corrupt_image``."""
    payload = value.split(",", 1)[1] if value.startswith("data:image/") and "," in value else value
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            return to_png(image)
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as err:
        raise DataError(file, record_id, field, "corrupt_image", f"not a base64 image: {err}") from err


def row_images(value: Any, file: str, record_id: str) -> list[bytes]:
    """The decoded images of one ``image`` cell; ``<TLTS>`` entries are removed images."""
    values = value if isinstance(value, list | tuple) else [value]
    images, removed = [], 0
    for index, entry in enumerate(values):
        field = "image" if len(values) == 1 else f"image[{index}]"
        if entry is None or entry == REMOVED_IMAGE:
            removed += 1
            continue
        if not isinstance(entry, str):
            raise DataError(file, record_id, field, "wrong_type", f"expected base64 text, got {type(entry).__name__}")
        images.append(decode_image(entry, file, record_id, field))
    if not images and removed:
        raise DataError(file, record_id, "image", "removed_image", f"every image is {REMOVED_IMAGE}")
    return images


def slice_of_row(row: dict[str, Any]) -> str:
    """The Omni-Bench slice named by a metadata column, else ``unsliced``."""
    for column in SLICE_COLUMNS:
        value = row.get(column)
        if isinstance(value, str) and value:
            if value in UNI_TASKS:
                return value
            for pattern, slice_name in SLICE_PATTERNS:
                if pattern.search(value):
                    return slice_name
    return UNSLICED


def row_record(row: dict[str, Any], file: str, index: int) -> Record:
    """One released row → :class:`Record` (see the module docstring)."""
    record_id = f"omnibench/{Path(file).stem}/{index:05d}"
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(file, record_id, "question", "empty_field", "question is missing or empty")
    answer = row.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise DataError(file, record_id, "answer", "empty_field", "answer is missing or empty")
    answer_text = str(answer).strip()
    images = row_images(row.get("image"), file, record_id)
    slice_name = slice_of_row(row)
    meta = {key: value for key, value in row.items() if key not in REQUIRED_COLUMNS and _plain(value)}
    meta.update(omnibench_slice=slice_name, official_question=question.strip(), file=file, row=index)
    return Record(
        id=record_id, source="omnibench_release",
        uni_task=slice_name if slice_name in UNI_TASKS else "natural", skills=[],
        question=" ".join(question.replace(IMAGE_SLOT, " ").split()), choices=[], input_images=images,
        steps=[], final_answer=answer_text, answer_type=answer_type_of(answer_text, []), meta=meta,
    )  # fmt: skip


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def read_released_bench(
    path: Path | str, on_bad_record: str, skipped: Counter[str] | None = None
) -> Iterator[Record]:
    """Records of the released Omni-Bench parquet file(s) under ``path``, in file and row order.

    Args:
        path: a parquet file or a folder of them (a local copy, or :func:`hub_folder`).
        on_bad_record: ``error`` raises the :class:`DataError`; ``skip`` counts it in ``skipped``
            by reason (a file without a required column counts each of its rows).
        skipped: counter of skipped rows by reason.

    Raises:
        DataError: a missing column, an empty question or answer, an undecodable image or a row
            whose every image is ``<TLTS>``; the message names the file, row and field.
    """
    counter = skipped if skipped is not None else Counter()
    for file in parquet_files(path):
        table = pq.read_table(file)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            err = DataError(str(file), "-", ",".join(missing), "missing_column", f"columns {missing} are missing")
            if on_bad_record != "skip":
                raise err
            counter[err.reason] += table.num_rows
            continue
        for index, row in enumerate(table.to_pylist()):
            try:
                yield row_record(row, str(file), index)
            except DataError as err:
                if on_bad_record != "skip":
                    raise
                counter[err.reason] += 1
