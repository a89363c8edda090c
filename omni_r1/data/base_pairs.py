"""Image <-> text pairs that teach the tiny base model to draw before any PeSFT.

The paper starts both tracks from Anole, a model that already generates images. The tiny
default has no such model, so the ``base`` stage pre-trains it on pairs built here from the
synthetic Uni-Task scenes (:mod:`omni_r1.data.synthetic`) and the action executor
(:mod:`omni_r1.executor`). Three kinds, each a one-turn :class:`~omni_r1.trajectory.Trajectory`
in the usual template, so the PeSFT packer and trainer train on them unchanged:

| kind       | prompt                                      | assistant turn                          |
|------------|---------------------------------------------|-----------------------------------------|
| describe   | input image + "Describe this image."        | ``Final Answer:`` the scene description |
| draw       | "Draw the scene described: <description>"   | one step whose image is the rendering   |
| action     | input image + "Apply this action: <ACTION>" | the trace step (rationale, action) and  |
|            |                                             | the executor's image v_t = Exec(a, v)   |

Action pairs are the steps of synthetic traces (BBOX, ZOOM, MARK, LINE and grid PRED moves).
Descriptions are templates read from a scene's parameters; they pin the chart, rectangle and
grid scenes down exactly, and the natural scenes up to shape size and exact position.

Determinism: pair ``i`` of a kind comes from synthetic record ``i`` of split
``base_<split>`` (seeded by ``run.seed``, split, Uni-Task and index), so the same seed gives the
same pairs. Disjointness: a pair any of whose images (by pixel digest,
:func:`omni_r1.data.records.image_hash`) is in ``excluded`` is skipped and counted; the stage
excludes the Omni-Bench images from both sets and the held-out images from the training set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from omni_r1.config import Config
from omni_r1.data.records import Record, from_png, image_hash, to_png
from omni_r1.data.synthetic import GENERATORS, make_record, region_of
from omni_r1.trajectory import Step, Trajectory, render_action

PAIR_KINDS = ("describe", "draw", "action")
DRAW_RATIONALE = "Draw the scene."
DONE = "Done."
MAX_SKIP_FACTOR = 10  # records tried per pair wanted before giving up on a too-large exclusion set


@dataclass(frozen=True)
class BasePair:
    """One pre-training pair.

    ``images`` are in packing order (input images, then the step image); for ``draw`` and
    ``action`` the last one is the target the model must draw.
    """

    id: str
    kind: str
    trajectory: Trajectory
    images: tuple[Image.Image, ...]

    @property
    def draws(self) -> bool:
        """Whether the assistant turn ends in an image (``draw``, ``action``)."""
        return self.kind != "describe"


# ----------------------------------------------------------------------------- descriptions
def describe_scene(meta: dict[str, Any]) -> str:
    size = meta["size"]
    items = [
        f"a {item['colour']} {item['shape']} at the "
        f"{region_of(item['x'] + item['side'] / 2, item['y'] + item['side'] / 2, size)}"
        for item in meta["items"]
    ]
    return "Shapes: " + "; ".join(items) + "."


def describe_chart(meta: dict[str, Any]) -> str:
    bars = ", ".join(f"{label} {value}" for label, value in zip(meta["labels"], meta["values"], strict=True))
    return f"A bar chart with bars {bars}."


def describe_rectangle(meta: dict[str, Any]) -> str:
    return (
        f"A rectangle outline {meta['w_px']} wide and {meta['h_px']} tall "
        f"with its top left corner at ({meta['x']}, {meta['y']})."
    )


def describe_grid(meta: dict[str, Any]) -> str:
    walls = " ".join(f"({row},{col})" for row, col in meta["walls"]) or "none"
    return (
        f"A {meta['rows']}x{meta['cols']} grid. Walls: {walls}. "
        f"Agent at ({meta['agent'][0]},{meta['agent'][1]}). Goal at ({meta['goal'][0]},{meta['goal'][1]})."
    )


DESCRIBERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "natural": describe_scene,
    "structured": describe_chart,
    "diagrammatic": describe_rectangle,
    "vision_operational": describe_grid,
}


def describe(record: Record) -> str:
    """The template description of a synthetic record's input image (from its ``meta``)."""
    return DESCRIBERS[record.uni_task](record.meta)


# ----------------------------------------------------------------------------- one pair per kind
def describe_pair(record: Record, pair_id: str, index: int) -> BasePair:
    image = from_png(record.input_images[0])
    traj = Trajectory(question="Describe this image.", input_images=(image,), final_answer=describe(record))
    return BasePair(pair_id, "describe", traj, (image,))


def draw_pair(record: Record, pair_id: str, index: int) -> BasePair:
    image = from_png(record.input_images[0])
    traj = Trajectory(
        question=f"Draw the scene described: {describe(record)}",
        steps=(Step(rationale=DRAW_RATIONALE, has_image=True),),
        final_answer=DONE,
    )
    return BasePair(pair_id, "draw", traj, (image,))


def action_pair(record: Record, pair_id: str, index: int) -> BasePair:
    """Step ``index // tasks`` (cycled) of the record's executed actions: (v_{t-1}, a_t) -> v_t."""
    executed, before = [], from_png(record.input_images[0])
    for step in record.steps:
        if step.action is not None and step.image is not None:
            after = from_png(step.image)
            executed.append((before, step, after))
            before = after
    if not executed:
        raise ValueError(f"{record.id}: no executed action to make an action pair from")
    before, step, after = executed[(index // len(GENERATORS)) % len(executed)]
    traj = Trajectory(
        question=f"Apply this action to the image: {render_action(step.action)}",
        input_images=(before,),
        steps=(Step(rationale=step.rationale, action=step.action, has_image=True),),
        final_answer=DONE,
    )
    return BasePair(pair_id, "action", traj, (before, after))


PAIR_BUILDERS: dict[str, Callable[[Record, str, int], BasePair]] = {
    "describe": describe_pair,
    "draw": draw_pair,
    "action": action_pair,
}


# ----------------------------------------------------------------------------- sets of pairs
def pair_digests(pair: BasePair) -> set[str]:
    """Pixel digests of every image of a pair."""
    return {image_hash(to_png(image)) for image in pair.images}


def record_digests(records: Iterable[Record]) -> set[str]:
    """Pixel digests of every input and step image of some records (e.g. Omni-Bench)."""
    digests = set()
    for record in records:
        digests.update(image_hash(png) for png in record.input_images)
        digests.update(image_hash(step.image) for step in record.steps if step.image is not None)
    return digests


@dataclass
class PairSet:
    pairs: list[BasePair]
    skipped: int  # candidate pairs dropped for sharing an image with ``excluded``


def build_pairs(
    kind: str, split: str, count: int, cfg: Config, executor: Any, excluded: set[str]
) -> PairSet:
    """``count`` pairs of one kind, cycling over the Uni-Tasks, none with an excluded image.

    Args:
        kind: ``describe`` | ``draw`` | ``action``.
        split: the pair set's name (``train``, ``heldout``); records come from split ``base_<split>``.
        count: pairs wanted.
        cfg: the configuration (``run.seed``, ``data.synthetic``, ``executor``, ``trajectory``).
        executor: the :class:`omni_r1.executor.Executor` that renders the traces.
        excluded: pixel digests no pair may contain.

    Raises:
        ValueError: unknown kind, or fewer than ``count`` pairs after ``MAX_SKIP_FACTOR * count`` records.
    """
    if kind not in PAIR_BUILDERS:
        raise ValueError(f"unknown base pair kind {kind!r} (known: {', '.join(PAIR_KINDS)})")
    tasks = tuple(GENERATORS)
    pairs: list[BasePair] = []
    skipped = index = 0
    while len(pairs) < count:
        if index >= MAX_SKIP_FACTOR * count:
            raise ValueError(f"base pairs {split}/{kind}: only {len(pairs)} of {count} after {index} records ({skipped} excluded)")
        record = make_record(tasks[index % len(tasks)], f"base_{split}", index, cfg, executor)
        pair = PAIR_BUILDERS[kind](record, f"base/{split}/{kind}/{index:06d}", index)
        index += 1
        if pair_digests(pair) & excluded:
            skipped += 1
            continue
        pairs.append(pair)
    return PairSet(pairs, skipped)


def build_pair_sets(
    train_per_kind: int, heldout_per_kind: int, cfg: Config, executor: Any, excluded: set[str]
) -> tuple[PairSet, PairSet]:
    """(training, held-out) pairs of every kind; no held-out image appears in training.

    Held-out pairs avoid ``excluded``; training pairs avoid ``excluded`` and every held-out image.
    """
    heldout = [build_pairs(kind, "heldout", heldout_per_kind, cfg, executor, excluded) for kind in PAIR_KINDS]
    seen = set(excluded).union(*(pair_digests(pair) for part in heldout for pair in part.pairs))
    train = [build_pairs(kind, "train", train_per_kind, cfg, executor, seen) for kind in PAIR_KINDS]
    return merge(train), merge(heldout)


def merge(parts: list[PairSet]) -> PairSet:
    return PairSet([pair for part in parts for pair in part.pairs], sum(part.skipped for part in parts))
