"""Canonical records, their trajectory view, and parquet shard storage."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from omni_r1.data.records import (
    UNI_SKILLS,
    DataError,
    Record,
    RecordStep,
    image_hash,
    record_to_trajectory,
    skills_of,
    text_cot_trajectory,
    to_png,
)
from omni_r1.data.storage import MANIFEST, read_manifest, read_records, write_records
from omni_r1.trajectory import (
    ACTION_TYPES,
    BBox,
    Line,
    Mark,
    Pred,
    Zoom,
    parse_trajectory,
    render_trajectory,
)


def make_record(i: int, source: str = "unit", uni_task: str = "natural") -> Record:
    image = Image.new("RGB", (8, 8), (i % 256, 10, 20))
    return Record(
        id=f"{source}/{i}", source=source, uni_task=uni_task, skills=skills_of([BBox(x=0.1, y=0.1, w=0.5, h=0.5)]),
        question=f"q{i}?", choices=["x", "y"], input_images=[to_png(image)],
        steps=[RecordStep(rationale="look", action=BBox(x=0.1, y=0.1, w=0.5, h=0.5), image=to_png(image)),
               RecordStep(rationale="text only"),
               RecordStep(rationale="free image", image=to_png(image.rotate(90)))],
        final_answer="x", answer_type="choice", text_cot=["a", "b"], meta={"i": i, "nested": [1, 2]},
    )


def test_uni_skills_cover_every_action_once():
    names = [name for names in UNI_SKILLS.values() for name in names]
    assert sorted(names) == sorted(ACTION_TYPES)
    actions = [Zoom(x=0, y=0, w=1, h=1), Mark(x=0.5, y=0.5), Line(x1=0, y1=0, x2=1, y2=1),
               Pred(transition="grid_move", delta="up")]
    assert skills_of(actions) == list(UNI_SKILLS)


def test_record_to_trajectory_round_trips_through_text():
    record = make_record(3)
    traj = record_to_trajectory(record)
    assert [s.has_image for s in traj.steps] == [True, False, True]
    assert traj.input_images[0].getpixel((0, 0)) == (3, 10, 20)
    parsed = parse_trajectory(render_trajectory(traj))
    assert parsed.ok and parsed.steps[0].action == record.steps[0].action and parsed.final_answer == "x"
    assert [s.rationale for s in text_cot_trajectory(record).steps] == ["a", "b"]


def test_image_hash_is_of_pixels_not_encoding():
    image = Image.new("RGB", (4, 4), (1, 2, 3))
    png_fast = to_png(image)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    assert buffer.getvalue() != png_fast
    assert image_hash(buffer.getvalue()) == image_hash(png_fast)
    assert image_hash(to_png(Image.new("RGB", (4, 4), (1, 2, 4)))) != image_hash(png_fast)


def test_write_read_round_trip_and_manifest(tmp_path):
    records = [make_record(i, source="a" if i % 3 else "b") for i in range(7)]
    manifest = write_records(records, tmp_path / "ds", shard_size=3, skipped={"a:corrupt_image": 2})
    assert [s["records"] for s in manifest["shards"]] == [3, 3, 1]
    assert manifest["total"] == 7 and manifest["counts"]["source"] == {"a": 4, "b": 3}
    assert manifest["counts"]["skill"] == {"grounding": 7} and manifest["skipped_total"] == 2
    assert manifest["image_hashes"]["a/1"] == records[1].image_hashes()
    assert list(read_records(tmp_path / "ds")) == records
    assert read_manifest(tmp_path / "ds") == json.loads(json.dumps(manifest))


def test_rewrite_removes_stale_shards_and_leaves_no_temporaries(tmp_path):
    write_records([make_record(i) for i in range(6)], tmp_path, shard_size=2)
    write_records([make_record(i) for i in range(3)], tmp_path, shard_size=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [MANIFEST, "shard-00000.parquet", "shard-00001.parquet"]
    assert [r.id for r in read_records(tmp_path)] == ["unit/0", "unit/1", "unit/2"]


def test_failed_write_leaves_previous_dataset_readable(tmp_path):
    write_records([make_record(i) for i in range(2)], tmp_path, shard_size=1)

    def broken():
        yield make_record(10)
        yield make_record(11)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_records(broken(), tmp_path, shard_size=1)
    # the shard of the failed write replaced shard-00000, but the old manifest names the
    # old hash: the reader refuses instead of mixing two writes
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    with pytest.raises(DataError, match="sha256"):
        list(read_records(tmp_path))


def test_duplicate_ids_and_corrupt_shards_are_errors(tmp_path):
    with pytest.raises(DataError, match="duplicate"):
        write_records([make_record(1), make_record(1)], tmp_path / "dup", shard_size=4)
    write_records([make_record(1)], tmp_path / "ok", shard_size=4)
    shard = tmp_path / "ok" / "shard-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="shard-00000.parquet"):
        list(read_records(tmp_path / "ok"))
    with pytest.raises(DataError, match="manifest"):
        list(read_records(tmp_path / "missing"))
