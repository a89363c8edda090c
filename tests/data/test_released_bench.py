"""The released Omni-Bench parquet in its exact schema, and its bad inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from released_bench_fixtures import png_base64, released_rows, write_bench

from omni_r1.data.records import DataError, from_png
from omni_r1.data.released_bench import HUB_ID, read_released_bench


def test_hub_id_is_the_released_one() -> None:
    assert HUB_ID == "ModalityDance/Omni-Bench"


def test_every_image_form_is_read(tmp_path: Path) -> None:
    path = write_bench(tmp_path / "omni-bench.parquet", released_rows())
    records = list(read_released_bench(path, "error"))
    assert [len(r.input_images) for r in records] == [1, 1, 2, 1]  # <TLTS> entries are removed images
    assert from_png(records[0].input_images[0]).getpixel((0, 0)) == (220, 20, 20)
    assert from_png(records[1].input_images[0]).getpixel((0, 0)) == (20, 20, 220)  # data URL
    assert [r.meta["omnibench_slice"] for r in records] == ["natural", "structured", "diagrammatic", "vision_operational"]
    assert records[0].question == "What colour is the square?"  # placeholders out of our prompt
    assert records[0].meta["official_question"] == "<image>What colour is the square?"  # kept for the official one
    assert [r.final_answer for r in records] == ["red", "4", "B", "1"]
    assert records[0].id == "omnibench/omni-bench/00000"


def test_plain_string_column_and_folder(tmp_path: Path) -> None:
    rows = [{"question": "Q?", "image": png_base64((1, 2, 3)), "answer": "x"}]  # image: a string column
    write_bench(tmp_path / "bench" / "part-0.parquet", rows, list_images=False)
    write_bench(tmp_path / "bench" / "sub" / "part-1.parquet", rows, list_images=False)
    records = list(read_released_bench(tmp_path / "bench", "error"))
    assert [Path(r.meta["file"]).name for r in records] == ["part-0.parquet", "part-1.parquet"]
    assert records[0].meta["omnibench_slice"] == "unsliced"


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "no-answer.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Q?", "image": png_base64((0, 0, 0))}] * 3), path)
    with pytest.raises(DataError, match=r"no-answer.parquet.*'answer'.*missing_column"):
        list(read_released_bench(path, "error"))
    skipped: Counter[str] = Counter()
    assert list(read_released_bench(path, "skip", skipped)) == []
    assert skipped == {"missing_column": 3}


@pytest.mark.parametrize(
    ("image", "field", "reason"),
    [
        ("not-base64-!!!", "image", "corrupt_image"),
        ("data:image/png;base64,aGVsbG8=", "image", "corrupt_image"),  # valid base64, not an image
        (["<TLTS>"], "image", "removed_image"),
        ("<TLTS>", "image", "removed_image"),
    ],
)
def test_bad_rows_name_file_row_and_field_or_are_counted(tmp_path: Path, image, field, reason) -> None:
    rows = released_rows()[:2] + [{"question": "Bad?", "image": image, "answer": "1"}]
    path = write_bench(tmp_path / "bad.parquet", rows)
    with pytest.raises(DataError, match=rf"bad.parquet: record 'omnibench/bad/00002', field '{field}'.*\[{reason}\]"):
        list(read_released_bench(path, "error"))
    skipped: Counter[str] = Counter()
    assert len(list(read_released_bench(path, "skip", skipped))) == 2
    assert skipped == {reason: 1}


def test_bad_entry_inside_a_list_names_its_index(tmp_path: Path) -> None:
    path = write_bench(tmp_path / "bad.parquet", [{"question": "Q", "image": [png_base64((0, 0, 0)), "@@@"], "answer": "1"}])
    with pytest.raises(DataError, match=r"field 'image\[1\]'.*corrupt_image"):
        list(read_released_bench(path, "error"))
