"""Omni-Bench assembly (paper Table 1) and the seeded selection helpers shared with the mixes.

Omni-Bench has four slices, one per Uni-Task: natural (V* 100), structured (ArxivQA 100 +
ChartQA 100), diagrammatic (Geometry3K 100 + MathVista 100), vision-operational (ViC-Bench
300); the counts live in ``params.yaml`` (``data.omnibench``). The embedded default builds
the same four slices from held-out synthetic tasks (``data.synthetic.omnibench_per_slice``).
Omni-Bench is disjoint from every training set by record id and by image pixel hash:
training sets drop colliding records, synthetic slices re-draw colliding candidates.

Selections are seeded and streaming: a record's rank is a hash of (seed, id), so the same
seed picks the same records whatever the order or size of the upstream files.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from omni_r1.data.records import UNI_TASKS, Record, image_hash

OVERLAP_REASON = "overlaps_omnibench"


def seeded_rank(seed: int, record_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, record id)."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def seeded_take(records: Iterable[Record], count: int, seed: int) -> list[Record]:
    """The ``count`` records of lowest seeded rank, in rank order (streaming, O(count) memory)."""
    heap: list[tuple[float, str, Record]] = []
    for record in records:
        item = (-seeded_rank(seed, record.id), record.id, record)
        if len(heap) < count:
            heapq.heappush(heap, item)
        elif count and item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    return [record for _, _, record in sorted(heap, key=lambda item: (-item[0], item[1]))]


def seeded_fraction(records: Iterable[Record], fraction: float, seed: int) -> Iterator[Record]:
    """Each record kept when its seeded rank is below ``fraction`` (about that share)."""
    return (record for record in records if seeded_rank(seed, record.id) < fraction)


def input_hashes(record: Record) -> list[str]:
    return [image_hash(png) for png in record.input_images]


def hashes_of(record: Record, scope: str) -> list[str]:
    """Image hashes of a record: ``input`` images only, or ``all`` (input + step images)."""
    return input_hashes(record) if scope == "input" else record.image_hashes()


@dataclass
class Exclusion:
    """Record ids and image hashes a dataset must not share.

    The rule: no Omni-Bench input image appears anywhere in training data (as an input or
    a step image), and no record id is shared. Step images of Omni-Bench traces may repeat
    training step images (a zoomed red triangle looks the same in every scene).
    """

    ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)

    def add(self, record: Record, scope: str) -> None:
        self.ids.add(record.id)
        self.hashes.update(hashes_of(record, scope))

    def overlaps(self, record: Record, scope: str) -> bool:
        return record.id in self.ids or not self.hashes.isdisjoint(hashes_of(record, scope))

    @classmethod
    def of(cls, records: Iterable[Record], scope: str) -> Exclusion:
        exclusion = cls()
        for record in records:
            exclusion.add(record, scope)
        return exclusion


def drop_overlaps(records: Iterable[Record], bench: Exclusion, skipped: Counter[str]) -> Iterator[Record]:
    """Training records sharing no id and no image with Omni-Bench inputs; the rest counted.

    Args:
        bench: built with ``Exclusion.of(omnibench, "input")``.
    """
    for record in records:
        if bench.overlaps(record, "all"):
            skipped[OVERLAP_REASON] += 1
        else:
            yield record


def tag_slice(record: Record, slice_name: str) -> Record:
    return record.model_copy(update={"meta": {**record.meta, "omnibench_slice": slice_name}})


def assemble_omnibench(
    slice_sources: Mapping[str, Mapping[str, Iterable[Record]]],
    counts: Mapping[str, Mapping[str, int]],
    seed: int,
) -> list[Record]:
    """Omni-Bench from real sources: per slice and source, ``counts`` records chosen by seed.

    Args:
        slice_sources: slice -> source name -> that source's eval records (only the sources
            present; a missing source leaves its part of the slice empty).
        counts: slice -> source -> how many (paper Table 1 in params.yaml).
        seed: selection seed.

    Returns:
        The records, each tagged with ``meta["omnibench_slice"]``, slices in Uni-Task order.
    """
    bench: list[Record] = []
    for slice_name in UNI_TASKS:
        for source, records in slice_sources.get(slice_name, {}).items():
            count = counts.get(slice_name, {}).get(source, 0)
            bench += [tag_slice(r, slice_name) for r in seeded_take(records, count, seed)]
    return bench


def synthetic_omnibench(
    candidates: Mapping[str, Iterator[Record]], per_slice: int, exclusion: Exclusion,
    max_tries: int = 20,
) -> tuple[list[Record], Counter[str]]:
    """``per_slice`` held-out synthetic records per Uni-Task, none overlapping ``exclusion``.

    Args:
        candidates: Uni-Task -> an endless stream of held-out candidate records.
        per_slice: records per slice.
        exclusion: ids and all image hashes of the training data
            (``Exclusion.of(train, "all")``); grows with the chosen records.
        max_tries: candidates drawn per wanted record before giving up.

    Returns:
        The records and the count of re-drawn candidates by reason.
    """
    bench: list[Record] = []
    redrawn: Counter[str] = Counter()
    for slice_name in UNI_TASKS:
        kept, tries = 0, 0
        for record in candidates[slice_name]:
            if kept == per_slice:
                break
            tries += 1
            if tries > max_tries * per_slice:
                raise RuntimeError(f"omnibench slice {slice_name}: too many candidates overlap training")
            if exclusion.overlaps(record, "input"):
                redrawn[OVERLAP_REASON] += 1
                continue
            exclusion.add(record, "input")  # also keeps the slice free of duplicates
            bench.append(tag_slice(record, slice_name))
            kept += 1
    return bench, redrawn


def slice_counts(records: Iterable[Record]) -> dict[str, Any]:
    return dict(Counter(r.meta.get("omnibench_slice", r.uni_task) for r in records))
