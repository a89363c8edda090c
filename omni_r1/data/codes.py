"""Cached codebook codes of dataset images: ``data/encoded/<name>/codes.parquet``.

One row per image: ``record_id``, ``image_key`` (``input_<i>`` or ``step_<t>``, t the
0-based step index), ``codes`` (H*W codebook indices, row-major). ``cache_key.json`` holds
what the codes depend on — the VQ tokenizer hash and the dataset manifest hash — so a new
tokenizer or new data re-encodes and anything else is a cache hit — and ``codes_sha256``, the
hash of ``codes.parquet`` recorded when it was written and checked by :func:`read_codes`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from omni_r1.data.records import DataError, Record, from_png
from omni_r1.data.storage import MANIFEST, _atomic_write_bytes, read_records, sha256_file

CODES_FILE = "codes.parquet"
CACHE_KEY_FILE = "cache_key.json"
ENCODE_CHUNK = 64  # images per encoder call: bounds memory only, the codes do not depend on it
CODES_SCHEMA = pa.schema([("record_id", pa.string()), ("image_key", pa.string()), ("codes", pa.list_(pa.int32()))])

Encoder = Callable[[Sequence[Image.Image]], torch.Tensor]  # images -> [N, H*W] codes


def image_items(record: Record) -> Iterator[tuple[str, bytes]]:
    """``(image_key, png)`` for every image of a record: inputs, then step images."""
    for index, png in enumerate(record.input_images):
        yield f"input_{index}", png
    for index, step in enumerate(record.steps):
        if step.image is not None:
            yield f"step_{index}", step.image


def cache_key(dataset_dir: Path | str, tokenizer_hash: str) -> dict[str, str]:
    manifest = (Path(dataset_dir) / MANIFEST).read_bytes()
    return {"tokenizer_hash": tokenizer_hash, "manifest_sha256": hashlib.sha256(manifest).hexdigest()}


def is_cached(out_dir: Path | str, key: dict[str, str]) -> bool:
    path = Path(out_dir) / CACHE_KEY_FILE
    if not path.exists() or not (Path(out_dir) / CODES_FILE).exists():
        return False
    stored = json.loads(path.read_text(encoding="utf-8"))
    return all(stored.get(name) == value for name, value in key.items())


def encode_dataset(
    dataset_dir: Path | str, out_dir: Path | str, encoder: Encoder, key: dict[str, str],
    batch_size: int = ENCODE_CHUNK,
    on_images: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Encode every image of a prepared dataset unless the cache key matches.

    Args:
        dataset_dir: ``data/prepared/<name>``.
        out_dir: ``data/encoded/<name>``.
        encoder: images -> ``[N, H*W]`` LongTensor of codebook indices.
        key: :func:`cache_key` of the dataset and tokenizer.
        batch_size: images per encoder call.
        on_images: called with the number of images of each encoder call (progress).

    Returns:
        ``{"cached": bool, "images": count, "tokens_per_image": H*W, **key}``.
    """
    out = Path(out_dir)
    if is_cached(out, key):
        return {**json.loads((out / CACHE_KEY_FILE).read_text(encoding="utf-8")), "cached": True}
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    pending: list[tuple[str, str, bytes]] = []
    tokens = 0

    def flush() -> None:
        nonlocal tokens
        codes = encoder([from_png(png) for _, _, png in pending])  # [b, H*W]
        tokens = int(codes.shape[1])
        for (record_id, image_key, _), row in zip(pending, codes.tolist(), strict=True):
            rows.append({"record_id": record_id, "image_key": image_key, "codes": row})
        if on_images is not None:
            on_images(len(pending))
        pending.clear()

    for record in read_records(dataset_dir):
        for image_key, png in image_items(record):
            pending.append((record.id, image_key, png))
            if len(pending) >= batch_size:
                flush()
    if pending:
        flush()
    table = pa.Table.from_pylist(rows, schema=CODES_SCHEMA)
    _atomic_write_bytes(out / CODES_FILE, lambda tmp: pq.write_table(table, tmp))
    info = {**key, "images": len(rows), "tokens_per_image": tokens, "codes_sha256": sha256_file(out / CODES_FILE)}
    text = json.dumps(info, indent=1)
    _atomic_write_bytes(out / CACHE_KEY_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {**info, "cached": False}


def verify_codes(encoded_dir: Path | str) -> None:
    """Check ``codes.parquet`` against the ``codes_sha256`` recorded in ``cache_key.json``.

    Raises:
        DataError: the key file is unreadable or the codes file's hash differs (names the file).
    """
    folder = Path(encoded_dir)
    key_path, codes_path = folder / CACHE_KEY_FILE, folder / CODES_FILE
    if not key_path.is_file():
        return  # codes written by hand (tests, older caches) carry no recorded hash
    try:
        recorded = json.loads(key_path.read_text(encoding="utf-8")).get("codes_sha256")
    except (ValueError, AttributeError) as err:
        raise DataError(str(key_path), "-", "codes_sha256", "corrupt_cache_key", f"unreadable ({err})") from err
    if recorded is not None and sha256_file(codes_path) != recorded:
        raise DataError(str(codes_path), "-", "sha256", "corrupt_codes", f"hash does not match {CACHE_KEY_FILE}")


def read_codes(encoded_dir: Path | str) -> dict[tuple[str, str], torch.Tensor]:
    """``(record_id, image_key) -> LongTensor [H*W]`` for every cached image of a dataset.

    Raises:
        DataError: ``codes.parquet`` does not match the hash recorded when it was written.
    """
    verify_codes(encoded_dir)
    table = pq.read_table(Path(encoded_dir) / CODES_FILE)
    return {
        (record_id, image_key): torch.tensor(codes, dtype=torch.long)
        for record_id, image_key, codes in zip(
            table.column("record_id").to_pylist(), table.column("image_key").to_pylist(),
            table.column("codes").to_pylist(), strict=True)
    }
