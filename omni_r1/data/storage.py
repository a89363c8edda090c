"""Parquet shards + manifest: how prepared datasets live on disk (and in DVC).

Layout of a dataset folder ``data/prepared/<name>/``::

    shard-00000.parquet   records, images as PNG bytes
    shard-00001.parquet
    manifest.json         written last: shards with sha256, counts per source / uni_task /
                          skill, skipped records by reason, per-record image hashes, total,
                          and ``content_sha256`` over all of that (a corrupt manifest is refused)

Each shard is written to a temporary file in the same folder and renamed into place, so a
half-written shard is never visible; the manifest is written the same way after every shard.
Readers go through the manifest, so shards from an earlier, larger write are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omni_r1.data.records import DataError, Record, RecordStep, action_from_json, action_to_json

MANIFEST = "manifest.json"
CONTENT_HASH = "content_sha256"  # manifest entry: sha256 of the canonical JSON of every other entry
SHARD_PATTERN = "shard-{index:05d}.parquet"

STEP_TYPE = pa.struct(
    [("rationale", pa.string()), ("action", pa.string()), ("image", pa.binary())]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("uni_task", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("question", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("input_images", pa.list_(pa.binary())),
        ("steps", pa.list_(STEP_TYPE)),
        ("final_answer", pa.string()),
        ("answer_type", pa.string()),
        ("text_cot", pa.list_(pa.string())),
        ("meta", pa.string()),  # JSON
    ]
)


def _row(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "source": record.source,
        "uni_task": record.uni_task,
        "skills": list(record.skills),
        "question": record.question,
        "choices": list(record.choices),
        "input_images": list(record.input_images),
        "steps": [
            {"rationale": s.rationale, "action": action_to_json(s.action), "image": s.image}
            for s in record.steps
        ],
        "final_answer": record.final_answer,
        "answer_type": record.answer_type,
        "text_cot": record.text_cot,
        "meta": json.dumps(record.meta, sort_keys=True),
    }


def _record(row: Mapping[str, Any]) -> Record:
    steps = [
        RecordStep(rationale=s["rationale"], action=action_from_json(s["action"]), image=s["image"])
        for s in row["steps"]
    ]
    return Record(**{**row, "steps": steps, "meta": json.loads(row["meta"])})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_shard(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    _atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))


def write_records(
    records: Iterable[Record],
    out_dir: Path | str,
    *,
    name: str | None = None,
    shard_size: int,
    skipped: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write records as parquet shards plus ``manifest.json``; return the manifest.

    Args:
        records: the records, streamed; ids must be unique.
        out_dir: the dataset folder (created).
        name: dataset name recorded in the manifest (default: the folder name).
        shard_size: records per shard.
        skipped: records left out upstream, counted by reason.
        extra: more JSON-safe manifest entries (e.g. the mix that built the set).

    Raises:
        DataError: on a duplicate record id.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Counter[str]] = {"source": Counter(), "uni_task": Counter(), "skill": Counter()}
    image_hashes: dict[str, list[str]] = {}
    shards: list[dict[str, Any]] = []
    buffer: list[dict[str, Any]] = []

    def flush() -> None:
        path = out / SHARD_PATTERN.format(index=len(shards))
        _write_shard(buffer, path)
        shards.append({"file": path.name, "records": len(buffer), "sha256": sha256_file(path)})
        buffer.clear()

    for record in records:
        if record.id in image_hashes:
            raise DataError(str(out), record.id, "id", "duplicate_id", "duplicate record id")
        image_hashes[record.id] = record.image_hashes()
        counts["source"][record.source] += 1
        counts["uni_task"][record.uni_task] += 1
        counts["skill"].update(record.skills)
        buffer.append(_row(record))
        if len(buffer) >= shard_size:
            flush()
    if buffer or not shards:
        flush()
    manifest = {
        "name": name or out.name,
        "total": len(image_hashes),
        "counts": {key: dict(sorted(value.items())) for key, value in counts.items()},
        "skipped": dict(sorted((skipped or {}).items())),
        "skipped_total": sum((skipped or {}).values()),
        "shards": shards,
        "image_hashes": image_hashes,
        **dict(extra or {}),
    }
    manifest[CONTENT_HASH] = content_sha256(manifest)
    _remove_stale_shards(out, {shard["file"] for shard in shards})
    text = json.dumps(manifest, indent=1, sort_keys=False)
    _atomic_write_bytes(out / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return manifest


def _remove_stale_shards(out: Path, keep: set[str]) -> None:
    for path in out.glob("shard-*.parquet"):
        if path.name not in keep:
            path.unlink()


def content_sha256(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's entries other than ``content_sha256``, as canonical JSON."""
    body = {key: value for key, value in manifest.items() if key != CONTENT_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_manifest(dataset_dir: Path | str) -> dict[str, Any]:
    """The manifest of a dataset folder, checked against its ``content_sha256`` when it has one.

    Raises:
        DataError: missing, unreadable, without a shard list, or changed since it was written.
    """
    path = Path(dataset_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(str(path), "-", "manifest", "missing_manifest", "no manifest") from err
    except ValueError as err:  # truncated or bit-flipped JSON, or bytes that are not UTF-8
        raise DataError(str(path), "-", "manifest", "corrupt_manifest", f"unreadable ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise DataError(str(path), "-", "shards", "corrupt_manifest", "no list of shards")
    if CONTENT_HASH in manifest and content_sha256(manifest) != manifest[CONTENT_HASH]:
        raise DataError(str(path), "-", CONTENT_HASH, "corrupt_manifest", "entries changed since it was written")
    return manifest


def manifest_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without per-record image hashes (what goes to metrics/ and MLflow)."""
    return {key: value for key, value in manifest.items() if key != "image_hashes"}


def read_records(dataset_dir: Path | str, *, verify: bool = True) -> Iterator[Record]:
    """Yield the records of a dataset folder, shard by shard, in write order.

    Args:
        dataset_dir: folder holding ``manifest.json`` and the shards it lists.
        verify: check each shard's sha256 against the manifest first.

    Raises:
        DataError: missing manifest, or a shard whose hash does not match.
    """
    root = Path(dataset_dir)
    for shard in read_manifest(root)["shards"]:
        path = root / shard["file"]
        if not path.is_file():
            raise DataError(str(path), "-", "file", "missing_shard", f"listed in {MANIFEST} but missing")
        if verify and sha256_file(path) != shard["sha256"]:
            raise DataError(str(path), "-", "sha256", "corrupt_shard", "shard hash does not match manifest")
        table = pq.read_table(path)
        for row in table.to_pylist():
            yield _record(row)
