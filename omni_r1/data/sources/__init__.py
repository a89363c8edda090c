"""Source adapters by name: each reads one upstream dataset in its exact schema.

``load_source(name, role, ...)`` yields canonical :class:`~omni_r1.data.records.Record`s of
one source for a role (``train`` or ``eval``), from the hub or from a local copy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from omni_r1.data.records import Record
from omni_r1.data.sources import (
    arxivqa,
    chartqa,
    geometry3k,
    m3cot,
    mathvista,
    vicbench,
    vstar,
    zebra_cot,
)
from omni_r1.data.sources.base import SourceSpec, convert_rows, load_rows

SOURCES: dict[str, SourceSpec] = {
    module.SPEC.name: module.SPEC
    for module in (zebra_cot, m3cot, arxivqa, geometry3k, vstar, chartqa, mathvista, vicbench)
}


def get_source(name: str) -> SourceSpec:
    if name not in SOURCES:
        raise KeyError(f"unknown data source {name!r} (known: {', '.join(SOURCES)})")
    return SOURCES[name]


def load_source(
    name: str,
    role: str,
    *,
    local_path: Path | str | None = None,
    on_bad_record: str,
    skipped: Counter[str] | None = None,
    cache_dir: str | None = None,
    configs: tuple[str, ...] | None = None,
) -> Iterator[Record]:
    """Records of one source for ``role`` (``train`` | ``eval``).

    Args:
        name: registry name, e.g. ``zebra_cot``.
        role: which upstream split(s) to read (the spec maps roles to splits).
        local_path: a local copy (file or folder as upstream ships it) instead of the hub.
        on_bad_record: ``error`` raises :class:`DataError`; ``skip`` counts into ``skipped``.
        skipped: counter of skipped records by ``source:reason``.
        cache_dir: ``datasets`` cache folder.
        configs: hub configs to read instead of the spec's (e.g. Zebra-CoT categories).
    """
    spec = get_source(name)
    if role not in spec.splits:
        raise KeyError(f"source {name!r} has no {role!r} split (has: {', '.join(spec.splits)})")
    counter = skipped if skipped is not None else Counter()
    splits = spec.splits[role].split(",")
    if local_path is not None and Path(local_path).is_file():
        splits = splits[:1]  # one local file holds one split
    for split in splits:
        rows = load_rows(spec, split, local_path=local_path, cache_dir=cache_dir, configs=configs)
        yield from convert_rows(spec, rows, on_bad_record, counter)


__all__ = ["SOURCES", "SourceSpec", "get_source", "load_source"]
