"""Demonstration scenes of the five atomic actions, for the executor gallery (paper, Appendix A).

Procedural, seeded scenes, one kind after another so that every atomic action of the
unified trajectory appears:

- a small target   -> ``BBOX`` around it, then ``ZOOM`` into it (colour question);
- a point          -> ``MARK`` with a label (which quadrant holds the triangle);
- two points       -> ``LINE`` between them (does the straight path cross the bar);
- a maze           -> ``PRED(grid_move: ...)`` steps along a shortest path (the grid world of
  :mod:`omni_r1.grid`, sampled with the ``data.synthetic`` grid settings).

Colours come from the synthetic tasks' palette (:data:`omni_r1.data.synthetic.COLOURS`).
These are scenes for checking the executor and the trajectory format by eye, not training
data; input images are 4:3 at four times ``executor.resolution``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from PIL import Image, ImageDraw

from omni_r1.config import ExecutorConfig, SyntheticDataConfig
from omni_r1.data.synthetic import COLOURS
from omni_r1.grid import GridState, sample_maze
from omni_r1.trajectory import BBox, Line, Mark, Pred, Step, Trajectory, Zoom

Example = tuple[str, Trajectory, GridState | None]  # scene name, trajectory, initial PRED state
SceneBuilder = Callable[[random.Random, ExecutorConfig, int, SyntheticDataConfig], Example]


def build_examples(
    count: int, seed: int, ecfg: ExecutorConfig, decimals: int, knobs: SyntheticDataConfig
) -> list[Example]:
    """``count`` examples, cycling through the scene kinds; example i uses its own RNG
    seeded from ``(seed, i)`` so adding examples never changes the earlier ones.

    Args:
        count, seed: ``gallery.examples`` and ``run.seed``.
        ecfg: the executor's settings (image resolution, colours).
        decimals: ``trajectory.coordinate_decimals`` of the actions' coordinates.
        knobs: ``data.synthetic``; the maze scene uses its grid settings.
    """
    builders: list[SceneBuilder] = [small_target_scene, mark_scene, line_scene, maze_scene]
    return [
        builders[index % len(builders)](random.Random(seed * 100_003 + index), ecfg, decimals, knobs)
        for index in range(count)
    ]


def _scene_size(ecfg: ExecutorConfig) -> tuple[int, int]:
    """Input images are larger than the model resolution and not square (4:3)."""
    return 4 * ecfg.resolution, 3 * ecfg.resolution


def _normalised_box(
    box: tuple[int, int, int, int], size: tuple[int, int], decimals: int
) -> tuple[float, float, float, float]:
    """Pixel box (exclusive right/bottom) -> normalised ``(x, y, w, h)``, kept in [0, 1]."""
    left, top, right, bottom = box
    width, height = size
    x, y = round(left / width, decimals), round(top / height, decimals)
    w = min(round((right - left) / width, decimals), round(1.0 - x, decimals))
    h = min(round((bottom - top) / height, decimals), round(1.0 - y, decimals))
    return x, y, w, h


def _box_fields(
    box: tuple[int, int, int, int], size: tuple[int, int], decimals: int
) -> dict[str, float]:
    return dict(zip("xywh", _normalised_box(box, size, decimals), strict=True))


def _padded(
    box: tuple[int, int, int, int], pad: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return (
        max(left - pad, 0),
        max(top - pad, 0),
        min(right + pad, size[0]),
        min(bottom + pad, size[1]),
    )


def _background(rng: random.Random, size: tuple[int, int], distractors: int) -> Image.Image:
    """A light background with large grey discs as distractors."""
    shade = rng.randint(215, 245)
    image = Image.new("RGB", size, (shade, shade, shade - 10))
    draw = ImageDraw.Draw(image)
    for _ in range(distractors):
        radius = rng.randint(size[1] // 10, size[1] // 5)
        cx, cy = rng.randint(0, size[0]), rng.randint(0, size[1])
        grey = rng.randint(120, 190)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(grey, grey, grey))
    return image


def _distinct_from(colour: tuple[int, int, int]) -> list[str]:
    """Names of the scene colours far from ``colour`` (so a target never looks like its box)."""
    return [
        name
        for name, rgb in sorted(COLOURS.items())
        if sum(abs(a - b) for a, b in zip(rgb, colour, strict=True)) > 150
    ]


def small_target_scene(
    rng: random.Random, ecfg: ExecutorConfig, decimals: int, knobs: SyntheticDataConfig
) -> Example:
    """A small coloured square among distractors: BBOX it, ZOOM into it, name its colour.

    The outline leaves a gap of half the square's side around it, so the zoomed view
    (cropped from the outlined image, v_{t-1}) still shows the square's own colour.
    """
    size = _scene_size(ecfg)
    image = _background(rng, size, distractors=4)
    side = max(size[0] // 12, 3)
    left, top = rng.randint(side, size[0] - 2 * side), rng.randint(side, size[1] - 2 * side)
    target = (left, top, left + side, top + side)
    colour = rng.choice(_distinct_from(ecfg.box_color))
    ImageDraw.Draw(image).rectangle(
        (left, top, left + side - 1, top + side - 1), fill=COLOURS[colour]
    )
    bbox = BBox(**_box_fields(_padded(target, side // 2, size), size, decimals))
    zoom = Zoom(**_box_fields(_padded(target, side * 3 // 2, size), size, decimals))
    traj = Trajectory(
        question="What colour is the small square?",
        input_images=(image,),
        steps=(
            Step(rationale="The square is small; outline it first.", action=bbox, has_image=True),
            Step(rationale="Zoom into the outlined region.", action=zoom, has_image=True),
            Step(rationale=f"In the zoomed view the square is clearly {colour}."),
        ),
        final_answer=colour,
    )
    return "small target: BBOX then ZOOM", traj, None


def _quadrant(x: float, y: float) -> str:
    return f"{'top' if y < 0.5 else 'bottom'} {'left' if x < 0.5 else 'right'}"


def mark_scene(
    rng: random.Random, ecfg: ExecutorConfig, decimals: int, knobs: SyntheticDataConfig
) -> Example:
    """Discs and one triangle: MARK the triangle with a label, say which quadrant holds it."""
    size = _scene_size(ecfg)
    image = _background(rng, size, distractors=2)
    draw = ImageDraw.Draw(image)
    radius = size[1] // 12
    for _ in range(4):
        cx, cy = rng.randint(radius, size[0] - radius), rng.randint(radius, size[1] - radius)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=COLOURS["blue"])
    cx, cy = (
        rng.randint(2 * radius, size[0] - 2 * radius),
        rng.randint(2 * radius, size[1] - 2 * radius),
    )
    draw.polygon(
        [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
        fill=COLOURS["orange"],
    )
    x, y = round(cx / size[0], decimals), round(cy / size[1], decimals)
    answer = _quadrant(x, y)
    traj = Trajectory(
        question="Which quadrant of the image holds the orange triangle?",
        choices=("top left", "top right", "bottom left", "bottom right"),
        input_images=(image,),
        steps=(
            Step(
                rationale="Find the triangle among the discs and mark it.",
                action=Mark(x=x, y=y, label="T1"),
                has_image=True,
            ),
            Step(rationale=f"The mark lies at x={x}, y={y}, so in the {answer} quadrant."),
        ),
        final_answer=answer,
    )
    return "point: MARK with a label", traj, None


def _segment_crosses(
    start: tuple[float, float], end: tuple[float, float], box: tuple[int, int, int, int]
) -> bool:
    """Whether the segment passes through the pixel box (sampled every half pixel)."""
    length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
    samples = int(2 * length) + 1
    left, top, right, bottom = box
    for i in range(samples + 1):
        t = i / samples
        px, py = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
        if left <= px < right and top <= py < bottom:
            return True
    return False


def line_scene(
    rng: random.Random, ecfg: ExecutorConfig, decimals: int, knobs: SyntheticDataConfig
) -> Example:
    """Two dots and a bar: draw the LINE between the dots, say whether it crosses the bar."""
    size = _scene_size(ecfg)
    image = Image.new("RGB", size, (240, 240, 235))
    draw = ImageDraw.Draw(image)
    bar_w, bar_h = size[0] // 12, rng.randint(size[1] // 4, size[1] // 2)
    bar_left, bar_top = size[0] // 2 - bar_w // 2, rng.randint(0, size[1] - bar_h)
    bar = (bar_left, bar_top, bar_left + bar_w, bar_top + bar_h)
    draw.rectangle((bar[0], bar[1], bar[2] - 1, bar[3] - 1), fill=(90, 90, 90))
    margin, dot = size[1] // 10, size[1] // 20
    start = (rng.randint(margin, size[0] // 3), rng.randint(margin, size[1] - margin))
    end = (rng.randint(2 * size[0] // 3, size[0] - margin), rng.randint(margin, size[1] - margin))
    for (px, py), colour in ((start, COLOURS["red"]), (end, COLOURS["green"])):
        draw.ellipse((px - dot, py - dot, px + dot, py + dot), fill=colour)
    x1, y1 = round(start[0] / size[0], decimals), round(start[1] / size[1], decimals)
    x2, y2 = round(end[0] / size[0], decimals), round(end[1] / size[1], decimals)
    crosses = _segment_crosses(start, end, bar)
    answer = "yes" if crosses else "no"
    traj = Trajectory(
        question="Does the straight path from the red dot to the green dot cross the grey bar?",
        choices=("yes", "no"),
        input_images=(image,),
        steps=(
            Step(
                rationale="Connect the two dots.",
                action=Line(x1=x1, y1=y1, x2=x2, y2=y2),
                has_image=True,
            ),
            Step(rationale=f"The line {'passes through' if crosses else 'misses'} the bar."),
        ),
        final_answer=answer,
    )
    return "two points: LINE", traj, None


def _runs(moves: tuple[str, ...]) -> list[list[str]]:
    """Consecutive equal moves grouped: one PRED step per straight run."""
    runs: list[list[str]] = []
    for move in moves:
        if runs and runs[-1][0] == move:
            runs[-1].append(move)
        else:
            runs.append([move])
    return runs


def maze_scene(
    rng: random.Random, ecfg: ExecutorConfig, decimals: int, knobs: SyntheticDataConfig
) -> Example:
    """A maze of the synthetic grid task (:func:`omni_r1.grid.sample_maze` with
    ``data.synthetic`` grid settings): one ``PRED(grid_move: ...)`` step per straight run
    of the shortest path."""
    state, path = sample_maze(rng, knobs.grid_size, knobs.grid_wall_fraction, knobs.grid_max_moves)
    steps = tuple(
        Step(
            rationale=f"Move {run[0]} {len(run)} cell{'s' if len(run) > 1 else ''}.",
            action=Pred(transition="grid_move", delta=", ".join(run)),
            has_image=True,
        )
        for run in _runs(path)
    )
    traj = Trajectory(
        question="Give the shortest sequence of moves that takes the agent (disc) to the goal cell.",
        input_images=(state.render(ecfg),),
        steps=steps,
        final_answer=", ".join(path),
    )
    return "maze: PRED grid_move", traj, state
