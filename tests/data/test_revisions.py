"""Source pins: local copies hashed by content, a moved copy refused until its pin moves."""

from __future__ import annotations

import hashlib

import pytest

from omni_r1.data.records import DataError
from omni_r1.data.revisions import changed_revisions, check_local_pin, local_revision


def test_local_revision_of_a_file_and_a_folder(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n')
    assert local_revision(tmp_path / "rows.jsonl") == "sha256:" + hashlib.sha256(b'{"a": 1}\n').hexdigest()
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "x.parquet").write_bytes(b"one")
    before = local_revision(folder)
    (folder / "y.parquet").write_bytes(b"two")  # a new file changes the folder's revision
    assert local_revision(folder) != before and before.startswith("sha256:")
    with pytest.raises(DataError, match="missing"):
        local_revision(tmp_path / "absent")


def test_changed_revisions_lists_new_and_moved_pins():
    pinned = {"arxivqa": "sha256:aa", "vstar": "c0ffee"}
    assert changed_revisions(pinned, {"arxivqa": "sha256:aa", "vstar": "c0ffee"}) == {}
    assert changed_revisions(pinned, {"arxivqa": "sha256:bb", "vstar": "c0ffee", "m3cot": "12ab"}) == {
        "arxivqa": "sha256:bb", "m3cot": "12ab",
    }  # fmt: skip


def test_a_local_copy_that_moved_off_its_pin_is_refused(tmp_path):
    path = tmp_path / "arxivqa.jsonl"
    path.write_text('{"id": 1}\n')
    pin = local_revision(path)
    check_local_pin("arxivqa", str(path), pin)
    check_local_pin("arxivqa", str(path), None)  # unpinned: nothing to check
    path.write_text('{"id": 2}\n')
    with pytest.raises(DataError) as info:
        check_local_pin("arxivqa", str(path), pin)
    assert info.value.field == "data.revisions.arxivqa" and info.value.reason == "revision_mismatch"
    assert str(path) in str(info.value) and pin in str(info.value)
