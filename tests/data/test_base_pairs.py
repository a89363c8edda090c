"""Base pre-training pairs: deterministic under run.seed, held-out disjoint from training and Omni-Bench."""

from __future__ import annotations

import pytest

from omni_r1.data.base_pairs import (
    PAIR_KINDS,
    build_pair_sets,
    build_pairs,
    describe_chart,
    pair_digests,
    record_digests,
)
from omni_r1.data.synthetic import generate
from omni_r1.executor import Executor
from omni_r1.model.packing import IGNORE_INDEX, pack_trajectory
from omni_r1.trajectory import render_prompt, render_trajectory


def signature(pairs) -> list[tuple]:
    """Everything a pair is made of: id, kind, prompt and assistant text, image pixels."""
    return [
        (pair.id, pair.kind, render_prompt(pair.trajectory), render_trajectory(pair.trajectory),
         tuple(sorted(pair_digests(pair))))
        for pair in pairs
    ]  # fmt: skip


def with_seed(cfg, seed: int):
    return cfg.model_copy(update={"run": cfg.run.model_copy(update={"seed": seed})})


@pytest.mark.parametrize("kind", PAIR_KINDS)
def test_same_seed_same_pairs_other_seed_other_pairs(cfg, kind) -> None:
    executor = Executor(cfg.executor)
    first = build_pairs(kind, "train", 8, cfg, executor, set())
    again = build_pairs(kind, "train", 8, cfg, executor, set())
    other = build_pairs(kind, "train", 8, with_seed(cfg, cfg.run.seed + 1), executor, set())
    assert len(first.pairs) == 8 and first.skipped == 0
    assert signature(first.pairs) == signature(again.pairs)
    # ids are per index, the content is per seed: no pair of the other seed equals its counterpart
    assert all(a != b for a, b in zip(signature(first.pairs), signature(other.pairs), strict=True))


def test_held_out_shares_no_image_with_training_nor_with_omnibench(cfg) -> None:
    executor = Executor(cfg.executor)
    omnibench = record_digests(generate("omnibench", 2, cfg))
    train, heldout = build_pair_sets(12, 4, cfg, executor, omnibench)
    assert len(train.pairs) == 12 * len(PAIR_KINDS) and len(heldout.pairs) == 4 * len(PAIR_KINDS)
    train_images = set().union(*(pair_digests(pair) for pair in train.pairs))
    heldout_images = set().union(*(pair_digests(pair) for pair in heldout.pairs))
    assert not train_images & heldout_images
    assert not (train_images | heldout_images) & omnibench
    assert {pair.kind for pair in heldout.pairs} == set(PAIR_KINDS)


def test_a_pair_with_an_excluded_image_is_skipped_and_counted(cfg) -> None:
    executor = Executor(cfg.executor)
    plain = build_pairs("draw", "heldout", 3, cfg, executor, set())
    excluded = pair_digests(plain.pairs[0])
    shifted = build_pairs("draw", "heldout", 3, cfg, executor, excluded)
    assert shifted.skipped == 1
    assert [pair.id for pair in shifted.pairs] == [pair.id for pair in plain.pairs[1:]] + [shifted.pairs[-1].id]
    assert shifted.pairs[-1].id not in {pair.id for pair in plain.pairs}


def test_kinds_put_the_target_in_the_assistant_turn(cfg, tiny_builder) -> None:
    """describe: text answer, no image target; draw: no input image, one step image; action:
    input v_{t-1}, the trace's action, the executor's image."""
    import torch

    executor = Executor(cfg.executor)
    describe, draw, action = (build_pairs(kind, "train", 4, cfg, executor, set()).pairs for kind in PAIR_KINDS)
    assert all(len(p.images) == 1 and not p.trajectory.steps for p in describe)
    assert all(p.trajectory.final_answer.endswith(".") and len(p.trajectory.final_answer) > 10 for p in describe)
    assert all(not p.trajectory.input_images and len(p.images) == 1 for p in draw)
    assert all(p.trajectory.steps[0].action is not None and len(p.images) == 2 for p in action)
    # the target image's codes are labelled (trained on), the input image's are not
    tiny = tiny_builder(seed=0)
    pair = action[0]
    codes = [torch.arange(tiny.layout.tokens_per_image) % tiny.layout.num_codes for _ in pair.images]
    packed = pack_trajectory(pair.trajectory, tiny.layout, tiny.tokenizer, codes, max_length=4096)
    start = packed.image_spans[-1].start
    assert (packed.labels[start : start + tiny.layout.tokens_per_image] != IGNORE_INDEX).all()
    first_input = int((packed.input_ids == tiny.layout.boi_id).nonzero()[0]) + 1
    assert (packed.labels[first_input : first_input + tiny.layout.tokens_per_image] == IGNORE_INDEX).all()


def test_chart_description_names_every_bar_and_value() -> None:
    meta = {"labels": ["A", "B", "C"], "values": [3, 9, 1]}
    assert describe_chart(meta) == "A bar chart with bars A 3, B 9, C 1."
