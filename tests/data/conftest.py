"""Fixtures of the data tests: a datasets cache and fixture files in each upstream schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from upstream_fixtures import LAYOUT, write_source


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    import datasets

    datasets.disable_progress_bars()
    return str(tmp_path_factory.mktemp("hf_cache"))


@pytest.fixture
def source_files(tmp_path: Path) -> Callable[[str, int], Path]:
    """``source_files(name, n)`` writes n good rows of a source; returns its local path."""

    def build(name: str, count: int = 3, offset: int = 0) -> Path:
        rows = [LAYOUT[name][0](offset + i) for i in range(count)]
        return write_source(name, tmp_path / f"{name}_{offset}", rows)

    return build
