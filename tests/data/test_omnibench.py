"""Omni-Bench assembly: Table 1 structure, seeded selection, disjointness from training."""

from __future__ import annotations

from collections import Counter

from PIL import Image

from omni_r1.data import synthetic
from omni_r1.data.mixes import perpo_mix
from omni_r1.data.omnibench import (
    OVERLAP_REASON,
    Exclusion,
    assemble_omnibench,
    drop_overlaps,
    input_hashes,
    seeded_fraction,
    seeded_take,
    synthetic_omnibench,
)
from omni_r1.data.records import UNI_TASKS, Record, to_png


def rec(i: int, source: str = "s", colour: int | None = None) -> Record:
    image = Image.new("RGB", (4, 4), (colour if colour is not None else i, 0, 0))
    return Record(id=f"{source}/{i}", source=source, uni_task="natural", skills=[], question="q",
                  choices=[], input_images=[to_png(image)], steps=[], final_answer="a",
                  answer_type="text")


def test_seeded_take_is_order_free_and_seed_dependent():
    records = [rec(i) for i in range(50)]
    first = seeded_take(records, 10, seed=0)
    assert len(first) == 10 and first == seeded_take(reversed(records), 10, seed=0)
    assert {r.id for r in first} != {r.id for r in seeded_take(records, 10, seed=1)}
    assert seeded_take(records, 100, seed=0) and len(seeded_take(records, 100, seed=0)) == 50
    share = sum(1 for _ in seeded_fraction((rec(i) for i in range(2000)), 0.1, seed=0)) / 2000
    assert 0.07 < share < 0.13


def test_assemble_uses_table_counts_per_slice_and_source(cfg):
    counts = {"natural": {"vstar": 3}, "structured": {"arxivqa": 2, "chartqa": 1}}
    sources = {"natural": {"vstar": [rec(i, "vstar") for i in range(9)]},
               "structured": {"arxivqa": [rec(i, "arxivqa") for i in range(9)],
                              "chartqa": [rec(i, "chartqa") for i in range(9)]}}
    bench = assemble_omnibench(sources, counts, seed=0)
    assert Counter((r.meta["omnibench_slice"], r.source) for r in bench) == {
        ("natural", "vstar"): 3, ("structured", "arxivqa"): 2, ("structured", "chartqa"): 1}
    assert cfg.data.omnibench == {  # paper Table 1
        "natural": {"vstar": 100}, "structured": {"arxivqa": 100, "chartqa": 100},
        "diagrammatic": {"geometry3k": 100, "mathvista": 100}, "vision_operational": {"vicbench": 300}}


def test_training_drops_records_sharing_an_id_or_an_image_with_the_bench():
    bench = [rec(1), rec(2)]
    training = [rec(1, colour=99), rec(3, colour=2), rec(4), rec(5)]  # same id; same pixels; clean
    skipped: Counter[str] = Counter()
    kept = list(drop_overlaps(training, Exclusion.of(bench, "input"), skipped))
    assert [r.id for r in kept] == ["s/4", "s/5"] and skipped == {OVERLAP_REASON: 2}


def test_synthetic_bench_redraws_overlaps_and_is_disjoint(cfg):
    train = list(synthetic.generate("train", 3, cfg))
    exclusion = Exclusion.of(train, "all")
    # the first candidates of every slice are training records themselves: all must be redrawn
    candidates = {t: _chain(synthetic.generate("train", 3, cfg, uni_tasks=(t,)),
                            synthetic.generate("omnibench", 100, cfg, uni_tasks=(t,))) for t in UNI_TASKS}
    bench, redrawn = synthetic_omnibench(candidates, 2, exclusion)
    assert redrawn[OVERLAP_REASON] >= 12
    assert Counter(r.meta["omnibench_slice"] for r in bench) == {t: 2 for t in UNI_TASKS}
    train_hashes = {h for r in train for h in r.image_hashes()}
    assert not {r.id for r in bench} & {r.id for r in train}
    assert not {h for r in bench for h in input_hashes(r)} & train_hashes


def _chain(*streams):
    for stream in streams:
        yield from stream


def test_perpo_mix_sizes(cfg):
    mix = cfg.data.perpo_mix.model_copy(update={"zebra_cot_fraction": 0.5, "arxivqa": 3, "geometry3k": 2})
    records = list(perpo_mix(mix, 0, zebra_cot=[rec(i, "zebra_cot") for i in range(400)],
                             arxivqa=[rec(i, "arxivqa") for i in range(10)],
                             geometry3k=[rec(i, "geometry3k") for i in range(10)]))
    counts = Counter(r.source for r in records)
    assert counts["arxivqa"] == 3 and counts["geometry3k"] == 2 and 160 < counts["zebra_cot"] < 240
    assert cfg.data.perpo_mix.model_dump() == {"zebra_cot_fraction": 0.1, "arxivqa": 1000, "geometry3k": 250}
