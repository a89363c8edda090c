"""Source adapters on fixture files in each upstream schema, and the bad-input matrix."""

from __future__ import annotations

from collections import Counter

import pytest
from upstream_fixtures import BAD_KINDS, LAYOUT, mutate, write_source

from omni_r1.data.records import DataError, from_png, record_to_trajectory
from omni_r1.data.sources import SOURCES, load_source
from omni_r1.data.storage import read_manifest, write_records
from omni_r1.trajectory import parse_trajectory, render_trajectory

ROLE = {"vstar": "eval", "chartqa": "eval", "mathvista": "eval", "vicbench": "eval"}


def test_every_source_has_a_fixture_and_a_real_hub_id():
    assert set(SOURCES) == set(LAYOUT)
    for spec in SOURCES.values():
        assert "/" in spec.hub_id and spec.splits


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_adapter_reads_upstream_schema(name, source_files, hf_cache):
    path = source_files(name, 3)
    records = list(load_source(name, ROLE.get(name, "train"), local_path=path, on_bad_record="error", cache_dir=hf_cache))
    assert len(records) == 3
    assert len({r.id for r in records}) == 3
    for record in records:
        assert record.id.startswith(f"{name}/") and record.source == name
        assert record.input_images and record.final_answer and record.question
        assert "<image" not in record.question
        for png in record.input_images:
            assert from_png(png).size == (16, 16)
        if record.answer_type == "choice":
            assert ord(record.final_answer) - ord("A") < len(record.choices)
        record_to_trajectory(record)  # every record is a valid trajectory


def test_zebra_cot_steps_keep_images_without_inventing_actions(source_files, hf_cache):
    record = next(load_source("zebra_cot", "train", local_path=source_files("zebra_cot", 1), on_bad_record="error", cache_dir=hf_cache))
    assert [s.rationale for s in record.steps] == [
        "Look at both paths.", "Trace path A.", "Trace path B.", "Path A is shorter."]
    assert [s.image is not None for s in record.steps] == [False, True, True, False]
    assert all(s.action is None for s in record.steps) and record.skills == []
    # images are the reasoning images named by the placeholders, in order
    assert from_png(record.steps[1].image).getpixel((0, 0)) == (37 * 100 % 256, 91 * 100 % 256, 53 * 100 % 256)
    parsed = parse_trajectory(render_trajectory(record_to_trajectory(record)))
    assert parsed.ok and parsed.image_count == 2 and parsed.final_answer == "A"


def test_m3cot_and_arxivqa_rationales_become_text_cot(source_files, hf_cache):
    m3 = next(load_source("m3cot", "train", local_path=source_files("m3cot", 1), on_bad_record="error", cache_dir=hf_cache))
    assert m3.text_cot == ["The animal barks.", "So it is a dog."] and m3.steps == []
    assert m3.final_answer == "B" and m3.choices[1] == "a dog" and m3.uni_task == "natural"
    ax = next(load_source("arxivqa", "train", local_path=source_files("arxivqa", 1), on_bad_record="error", cache_dir=hf_cache))
    assert ax.choices == ["a peak", "a dip", "noise"] and ax.final_answer == "A"
    assert ax.id == "arxivqa/cond-mat0000"


def test_vstar_options_parsed_from_text(source_files, hf_cache):
    record = next(load_source("vstar", "eval", local_path=source_files("vstar", 1), on_bad_record="error", cache_dir=hf_cache))
    assert record.choices == ["red", "blue", "green", "white"]
    assert record.question == "What is the colour of the umbrella 0?"
    assert record.final_answer == "B" and record.id == "vstar/0"


def test_local_folder_picks_the_split_files(tmp_path, hf_cache):
    from upstream_fixtures import chartqa_row

    folder = tmp_path / "chartqa" / "data"
    write_source("chartqa", folder, [chartqa_row(0), chartqa_row(1)])  # test-00000-of-00001
    (folder / "train-00000-of-00001.parquet").write_bytes((folder / "test-00000-of-00001.parquet").read_bytes())
    records = list(load_source("chartqa", "eval", local_path=tmp_path / "chartqa", on_bad_record="error", cache_dir=hf_cache))
    assert len(records) == 2 and all(r.id.startswith("chartqa/test/") for r in records)


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_bad_input_matrix(name, kind, tmp_path, hf_cache):
    row, reason, field = mutate(name, LAYOUT[name][0](0), kind)
    path = write_source(name, tmp_path / "bad", [row])
    role = ROLE.get(name, "train")
    with pytest.raises(DataError) as info:
        list(load_source(name, role, local_path=path, on_bad_record="error", cache_dir=hf_cache))
    err = info.value
    assert (err.reason, err.field) == (reason, field)
    assert str(path) in str(err) and err.record_id.startswith(f"{name}/") and err.record_id in str(err)
    skipped: Counter[str] = Counter()
    kept = list(load_source(name, role, local_path=path, on_bad_record="skip", skipped=skipped, cache_dir=hf_cache))
    assert kept == [] and skipped == {f"{name}:{reason}": 1}
    write_records(kept, tmp_path / "out", shard_size=4, skipped=skipped)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["skipped"] == {f"{name}:{reason}": 1} and manifest["total"] == 0


def test_unknown_source_and_role_are_named():
    with pytest.raises(KeyError, match="unknown data source 'nope'"):
        list(load_source("nope", "train", on_bad_record="error"))
    with pytest.raises(KeyError, match="no 'train' split"):
        list(load_source("vstar", "train", on_bad_record="error"))
