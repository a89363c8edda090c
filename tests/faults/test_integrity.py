"""Checksums recorded at write time and verified on load: checkpoint folders, prepared
datasets, encoded codes; atomic folder writes that survive a kill at any point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from omni_r1.data.codes import CACHE_KEY_FILE, CODES_FILE, encode_dataset, read_codes
from omni_r1.data.records import DataError, Record, RecordStep
from omni_r1.data.storage import MANIFEST, read_records, write_records
from omni_r1.model.loading import (
    CHECKSUMS,
    CheckpointError,
    recover_interrupted_write,
    verify_folder,
    write_folder_atomically,
)


def write_two_files(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (folder / "config.json").write_text('{"hidden": 4}')


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_atomic_folder_records_checksums_of_every_file(tmp_path):
    folder = write_folder_atomically(tmp_path / "ckpt", write_two_files)
    entries = json.loads((folder / CHECKSUMS).read_text())
    assert sorted(entries) == ["config.json", "model.safetensors"]
    assert entries["model.safetensors"]["bytes"] == 2048
    assert verify_folder(folder) == 2


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "delete"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, damage):
    folder = write_folder_atomically(tmp_path / "ckpt", write_two_files)
    weights = folder / "model.safetensors"
    if damage == "bitflip":
        flip_bit(weights, 1000)  # same size, other bytes
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        verify_folder(folder)


def test_a_damaged_checksum_manifest_is_refused_naming_it(tmp_path):
    folder = write_folder_atomically(tmp_path / "ckpt", write_two_files)
    manifest = folder / CHECKSUMS
    manifest.write_text(manifest.read_text()[:-5])
    with pytest.raises(CheckpointError, match=CHECKSUMS):
        verify_folder(folder)


def test_loading_a_corrupt_tiny_model_fails_before_transformers_reads_it(cfg, tmp_path):
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.loading import load_omni
    from omni_r1.model.tiny import save_tiny

    folder = save_tiny(build_tiny_for_tests(seed=0), tmp_path / "tiny")
    assert (folder / CHECKSUMS).is_file()
    load_omni(cfg, model_dir=folder)  # intact: loads
    flip_bit(folder / "model.safetensors", (folder / "model.safetensors").stat().st_size // 2)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_omni(cfg, model_dir=folder)


def test_kill_between_the_two_renames_is_recovered(tmp_path):
    final = write_folder_atomically(tmp_path / "ckpt", write_two_files)
    old = tmp_path / ".ckpt.old-deadbeef"
    os.replace(final, old)  # a kill after moving the old folder aside, before the new one arrived
    (tmp_path / ".ckpt.tmp-cafebabe").mkdir()  # and a temporary folder of a killed write
    recover_interrupted_write(final)
    assert verify_folder(final) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_new_write_cleans_what_a_killed_write_left(tmp_path):
    write_folder_atomically(tmp_path / "ckpt", write_two_files)
    (tmp_path / ".ckpt.tmp-0000").mkdir()
    (tmp_path / ".ckpt.old-1111").mkdir()
    write_folder_atomically(tmp_path / "ckpt", write_two_files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def records(count: int) -> list[Record]:
    return [
        Record(id=f"r{i}", source="test", uni_task="natural", skills=[], question=f"Q{i}?", choices=[],
               input_images=[], steps=[RecordStep(rationale="look")], final_answer=str(i), answer_type="numeric")
        for i in range(count)
    ]  # fmt: skip


def test_corrupt_manifest_is_refused_naming_it(tmp_path):
    write_records(records(3), tmp_path / "set", name="set", shard_size=2)
    manifest = tmp_path / "set" / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text.replace('"total": 3', '"total": 4'))  # valid JSON, other content
    with pytest.raises(DataError, match=f"{MANIFEST}.*content_sha256"):
        list(read_records(tmp_path / "set"))
    manifest.write_text(text[: len(text) // 2])  # truncated
    with pytest.raises(DataError, match=f"{MANIFEST}.*unreadable"):
        list(read_records(tmp_path / "set"))


def test_corrupt_or_missing_shard_is_refused_naming_it(tmp_path):
    write_records(records(3), tmp_path / "set", name="set", shard_size=2)
    shard = tmp_path / "set" / "shard-00001.parquet"
    flip_bit(shard, shard.stat().st_size // 2)
    with pytest.raises(DataError, match="shard-00001.parquet"):
        list(read_records(tmp_path / "set"))
    shard.unlink()
    with pytest.raises(DataError, match="shard-00001.parquet.*missing"):
        list(read_records(tmp_path / "set"))


def test_corrupt_codes_file_is_refused_naming_it(tiny_builder, tmp_path):
    from PIL import Image

    from omni_r1.data.records import to_png
    from omni_r1.model.images import encode_images

    omni = tiny_builder(seed=0)
    png = to_png(Image.new("RGB", (32, 32), (10, 200, 30)))
    with_images = [r.model_copy(update={"input_images": [png]}) for r in records(2)]
    write_records(with_images, tmp_path / "set", name="set", shard_size=4)
    encode_dataset(tmp_path / "set", tmp_path / "codes", lambda im: encode_images(omni, im), {"tokenizer_hash": "t"})
    assert "codes_sha256" in json.loads((tmp_path / "codes" / CACHE_KEY_FILE).read_text())
    assert len(read_codes(tmp_path / "codes")) == 2
    codes = tmp_path / "codes" / CODES_FILE
    codes.write_bytes(codes.read_bytes()[:-7])
    with pytest.raises(DataError, match=CODES_FILE):
        read_codes(tmp_path / "codes")
