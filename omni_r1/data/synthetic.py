"""Synthetic Uni-Tasks: procedural, seeded tasks with verifiable answers and interleaved traces.

The embedded default dataset. One generator per Uni-Task, together exercising all four
Uni-Skills (paper, Appendix A):

| Uni-Task           | task                                   | actions      | answer       |
|--------------------|----------------------------------------|--------------|--------------|
| natural            | scene search: small shape among others | BBOX, ZOOM   | its colour   |
| structured         | bar chart reading                      | MARK         | bar value    |
| diagrammatic       | rectangle diagonal (Pythagoras)        | LINE         | its length   |
| vision_operational | grid path: agent to goal               | PRED x k     | fewest moves |

Every generator draws its parameters (``meta``, JSON-safe, stored in the record), renders the
input image from them, and builds the trace whose step images the action executor renders
(v_t = Exec(a_t, v_{t-1})). ``solve(task, meta)`` re-derives the answer from ``meta`` alone.
Each record also carries a text-only chain of thought (``text_cot``) for the Omni-R1-Zero
bootstrap. Rationales are short templates so a tiny model can learn them quickly.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from omni_r1.config import Config, SyntheticDataConfig
from omni_r1.data.records import Record, RecordStep, skills_of, to_png
from omni_r1.grid import GRID_MOVES, GridState, sample_maze
from omni_r1.trajectory import BBox, Line, Mark, Pred, Zoom

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SOURCE = "synthetic"


# ----------------------------------------------------------------------------- natural
def sample_scene(rng: random.Random, knobs: SyntheticDataConfig, size: int) -> dict[str, Any]:
    """A small target shape among larger distractors of the other shapes, non-overlapping."""
    target_side = max(4, round(knobs.scene_target_fraction * size))
    target_shape = rng.choice(SHAPES)
    items = [{"shape": target_shape, "colour": rng.choice(list(COLOURS)), "side": target_side}]
    for _ in range(knobs.scene_distractors):
        items.append({
            "shape": rng.choice([s for s in SHAPES if s != target_shape]),
            "colour": rng.choice(list(COLOURS)),
            "side": rng.randint(target_side + 3, target_side + 8),
        })
    placed: list[dict[str, Any]] = []
    for item in items:
        for _ in range(200):
            x, y = rng.randint(1, size - item["side"] - 1), rng.randint(1, size - item["side"] - 1)
            if all(_apart((x, y, item["side"]), (p["x"], p["y"], p["side"])) for p in placed):
                placed.append({**item, "x": x, "y": y})
                break
    return {"size": size, "background": [235, 235, 235], "items": placed, "target": 0}


def _apart(a: tuple[int, int, int], b: tuple[int, int, int], gap: int = 2) -> bool:
    return a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0] or a[1] + a[2] + gap <= b[1] or b[1] + b[2] + gap <= a[1]


def render_scene(meta: dict[str, Any]) -> Image.Image:
    image = Image.new("RGB", (meta["size"], meta["size"]), tuple(meta["background"]))
    draw = ImageDraw.Draw(image)
    for item in meta["items"]:
        x, y, s, fill = item["x"], item["y"], item["side"], COLOURS[item["colour"]]
        if item["shape"] == "circle":
            draw.ellipse([x, y, x + s - 1, y + s - 1], fill=fill)
        elif item["shape"] == "square":
            draw.rectangle([x, y, x + s - 1, y + s - 1], fill=fill)
        else:
            draw.polygon([(x + s / 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=fill)
    return image


def solve_scene(meta: dict[str, Any]) -> str:
    return meta["items"][meta["target"]]["colour"]


def trace_scene(meta: dict[str, Any], decimals: int) -> tuple[str, list[tuple[str, Any]], list[str]]:
    target = meta["items"][meta["target"]]
    size, margin = meta["size"], 3
    x0, y0 = max(0, target["x"] - margin), max(0, target["y"] - margin)
    x1 = min(size, target["x"] + target["side"] + margin)
    y1 = min(size, target["y"] + target["side"] + margin)
    box = _box(x0 / size, y0 / size, (x1 - x0) / size, (y1 - y0) / size, decimals)
    shape, colour = target["shape"], solve_scene(meta)
    question = f"What colour is the small {shape}?"
    steps = [
        (f"Find the {shape}.", BBox(**box)),
        ("Zoom into the box.", Zoom(**box)),
        (f"The {shape} is {colour}.", None),
    ]
    where = region_of(target["x"] + target["side"] / 2, target["y"] + target["side"] / 2, size)
    text_cot = [f"The small {shape} is in the {where}.", f"It is {colour}."]
    return question, steps, text_cot


def _box(x: float, y: float, w: float, h: float, decimals: int) -> dict[str, float]:
    x, y = round(x, decimals), round(y, decimals)
    w, h = round(min(w, 1.0 - x), decimals), round(min(h, 1.0 - y), decimals)
    w, h = min(w, round(1.0 - x, decimals)), min(h, round(1.0 - y, decimals))
    return {"x": x, "y": y, "w": w, "h": h}


def region_of(cx: float, cy: float, size: int) -> str:
    """The ninth of a ``size`` x ``size`` image a pixel point falls in: "top left", ..., "centre"."""
    rows, cols = ("top", "middle", "bottom"), ("left", "centre", "right")
    row, col = rows[min(2, int(3 * cy / size))], cols[min(2, int(3 * cx / size))]
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


# ----------------------------------------------------------------------------- structured
CHART_TOP, CHART_BOTTOM_MARGIN, CHART_LEFT = 4, 10, 4


def sample_chart(rng: random.Random, knobs: SyntheticDataConfig, size: int) -> dict[str, Any]:
    labels = [chr(ord("A") + i) for i in range(knobs.chart_bars)]
    values = [rng.randint(1, knobs.chart_max_value) for _ in labels]
    return {"size": size, "labels": labels, "values": values, "max_value": knobs.chart_max_value,
            "asked": rng.randrange(len(labels)), "bar_colour": [60, 110, 200]}


def chart_geometry(meta: dict[str, Any]) -> dict[str, float]:
    """Pixel layout of the chart: baseline, pixels per unit, bar slot width."""
    size = meta["size"]
    bottom = size - CHART_BOTTOM_MARGIN
    return {"bottom": bottom, "unit": (bottom - CHART_TOP) / meta["max_value"],
            "slot": (size - CHART_LEFT - 2) / len(meta["values"])}


def render_chart(meta: dict[str, Any]) -> Image.Image:
    size, geo = meta["size"], chart_geometry(meta)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for value in range(1, meta["max_value"] + 1):  # one gridline per unit
        y = round(geo["bottom"] - value * geo["unit"])
        draw.line([(CHART_LEFT, y), (size - 1, y)], fill=(215, 215, 215))
    draw.line([(CHART_LEFT, CHART_TOP), (CHART_LEFT, geo["bottom"])], fill=(0, 0, 0))
    draw.line([(CHART_LEFT, geo["bottom"]), (size - 1, geo["bottom"])], fill=(0, 0, 0))
    font = ImageFont.load_default(size=max(6, size // 8))
    for index, (label, value) in enumerate(zip(meta["labels"], meta["values"], strict=True)):
        left = CHART_LEFT + 2 + index * geo["slot"] + geo["slot"] * 0.2
        right = left + geo["slot"] * 0.6
        top = round(geo["bottom"] - value * geo["unit"])
        draw.rectangle([round(left), top, round(right), geo["bottom"] - 1], fill=tuple(meta["bar_colour"]))
        draw.text(((left + right) / 2, geo["bottom"] + 1), label, fill=(0, 0, 0), font=font, anchor="ma")
    return image


def solve_chart(meta: dict[str, Any]) -> str:
    return str(meta["values"][meta["asked"]])


def trace_chart(meta: dict[str, Any], decimals: int) -> tuple[str, list[tuple[str, Any]], list[str]]:
    size, geo, index = meta["size"], chart_geometry(meta), meta["asked"]
    label, value = meta["labels"][index], solve_chart(meta)
    x = (CHART_LEFT + 2 + (index + 0.5) * geo["slot"]) / size
    y = (geo["bottom"] - meta["values"][index] * geo["unit"]) / size
    question = f"What is the value of bar {label}?"
    steps = [
        (f"Mark the top of bar {label}.", Mark(x=round(x, decimals), y=round(y, decimals), label=label)),
        (f"The top of bar {label} is at {value}.", None),
    ]
    text_cot = [f"Bar {label} is bar number {index + 1} from the left.", f"Its top reaches {value}."]
    return question, steps, text_cot


# ----------------------------------------------------------------------------- diagrammatic
def pythagorean_sides(max_side: int) -> list[tuple[int, int, int]]:
    """All (a, b, c) with a^2 + b^2 = c^2, a < b, c <= max_side."""
    return [(a, b, c) for c in range(5, max_side + 1) for b in range(1, c) for a in range(1, b)
            if a * a + b * b == c * c]


def sample_rectangle(rng: random.Random, knobs: SyntheticDataConfig, size: int) -> dict[str, Any]:
    a, b, _ = rng.choice(pythagorean_sides(knobs.geometry_max_side))
    width, height = (a, b) if rng.random() < 0.5 else (b, a)
    scale = rng.uniform(0.5, 0.85) * size / max(width, height)
    w_px, h_px = round(width * scale), round(height * scale)
    return {"size": size, "width": width, "height": height, "w_px": w_px, "h_px": h_px,
            "x": rng.randint(2, size - w_px - 3), "y": rng.randint(2, size - h_px - 3),
            "diagonal": rng.choice(["main", "anti"])}


def render_rectangle(meta: dict[str, Any]) -> Image.Image:
    image = Image.new("RGB", (meta["size"], meta["size"]), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x, y = meta["x"], meta["y"]
    draw.rectangle([x, y, x + meta["w_px"], y + meta["h_px"]], outline=(0, 0, 0), width=1)
    return image


def solve_rectangle(meta: dict[str, Any]) -> str:
    return _number(math.hypot(meta["width"], meta["height"]))


def _number(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


def trace_rectangle(meta: dict[str, Any], decimals: int) -> tuple[str, list[tuple[str, Any]], list[str]]:
    size, x, y = meta["size"], meta["x"], meta["y"]
    left, right, top, bottom = x / size, (x + meta["w_px"]) / size, y / size, (y + meta["h_px"]) / size
    ends = (left, top, right, bottom) if meta["diagonal"] == "main" else (left, bottom, right, top)
    line = Line(**dict(zip(("x1", "y1", "x2", "y2"), (round(v, decimals) for v in ends), strict=True)))
    w, h, answer = meta["width"], meta["height"], solve_rectangle(meta)
    question = f"The rectangle is {w} wide and {h} tall. How long is its diagonal?"
    pythagoras = f"sqrt({w}^2 + {h}^2) = sqrt({w * w + h * h}) = {answer}."
    steps = [
        ("Draw the diagonal.", line),
        (f"It closes a right triangle with legs {w} and {h}.", None),
        (pythagoras, None),
    ]
    text_cot = [f"The diagonal makes a right triangle with legs {w} and {h}.", pythagoras]
    return question, steps, text_cot


# ----------------------------------------------------------------------------- vision_operational
def sample_grid(rng: random.Random, knobs: SyntheticDataConfig, size: int) -> dict[str, Any]:
    """Walls, agent and goal such that the goal is reachable in 1..grid_max_moves moves."""
    state, _ = sample_maze(rng, knobs.grid_size, knobs.grid_wall_fraction, knobs.grid_max_moves)
    return {"size": size, "rows": state.rows, "cols": state.cols,
            "walls": [list(w) for w in sorted(state.walls)],
            "agent": list(state.agent), "goal": list(state.goal)}


def shortest_path(meta: dict[str, Any]) -> tuple[str, ...] | None:
    """The maze's shortest agent-to-goal moves (:meth:`omni_r1.grid.GridState.shortest_path`)."""
    return grid_state(meta).shortest_path()


def grid_state(meta: dict[str, Any]) -> GridState:
    """The :class:`GridState` a ``vision_operational`` record's ``meta`` describes."""
    return GridState(rows=meta["rows"], cols=meta["cols"], walls=frozenset(tuple(w) for w in meta["walls"]),
                     agent=tuple(meta["agent"]), goal=tuple(meta["goal"]))


def solve_grid(meta: dict[str, Any]) -> str:
    path = shortest_path(meta)
    if path is None:
        raise ValueError("goal unreachable")
    return str(len(path))


def trace_grid(meta: dict[str, Any], decimals: int) -> tuple[str, list[tuple[str, Any]], list[str]]:
    path = shortest_path(meta) or ()
    question = "How many moves does the agent need to reach the goal? Walls block moves."
    steps: list[tuple[str, Any]] = [(f"Move {move}.", Pred(transition="grid_move", delta=move)) for move in path]
    steps.append((f"The agent reached the goal in {len(path)} moves.", None))
    cell, text_cot = tuple(meta["agent"]), []
    for move in path:
        cell = (cell[0] + GRID_MOVES[move][0], cell[1] + GRID_MOVES[move][1])
        text_cot.append(f"Move {move} to row {cell[0]}, column {cell[1]}.")
    text_cot.append(f"That is {len(path)} moves.")
    return question, steps, text_cot


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class UniTaskGenerator:
    """The four pieces of one synthetic Uni-Task."""

    sample: Callable[[random.Random, SyntheticDataConfig, int], dict[str, Any]]
    render: Callable[[dict[str, Any]], Image.Image] | None  # None: the executor renders a state
    solve: Callable[[dict[str, Any]], str]
    trace: Callable[[dict[str, Any], int], tuple[str, list[tuple[str, Any]], list[str]]]
    answer_type: str


GENERATORS: dict[str, UniTaskGenerator] = {
    "natural": UniTaskGenerator(sample_scene, render_scene, solve_scene, trace_scene, "text"),
    "structured": UniTaskGenerator(sample_chart, render_chart, solve_chart, trace_chart, "number"),
    "diagrammatic": UniTaskGenerator(sample_rectangle, render_rectangle, solve_rectangle, trace_rectangle, "number"),
    "vision_operational": UniTaskGenerator(sample_grid, None, solve_grid, trace_grid, "number"),
}


def solve(uni_task: str, meta: dict[str, Any]) -> str:
    """Re-derive the answer of a synthetic record from its stored parameters."""
    return GENERATORS[uni_task].solve(meta)


def record_seed(base_seed: int, split: str, uni_task: str, index: int) -> int:
    text = f"{base_seed}/{split}/{uni_task}/{index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def initial_state(record: Record) -> Any:
    """The task state a record starts from: the grid of a synthetic state-rendered Uni-Task
    (PRED transitions act on it), None for every other record."""
    generator = GENERATORS.get(record.uni_task)
    if record.source != SOURCE or generator is None or generator.render is not None:
        return None
    return grid_state(record.meta)


def make_record(uni_task: str, split: str, index: int, cfg: Config, executor: Any) -> Record:
    """Build one synthetic record: sample, render v0, execute every action for v_t."""
    generator = GENERATORS[uni_task]
    rng = random.Random(record_seed(cfg.run.seed, split, uni_task, index))
    meta = generator.sample(rng, cfg.data.synthetic, cfg.executor.resolution)
    state = grid_state(meta) if generator.render is None else None
    image = state.render(cfg.executor) if state is not None else generator.render(meta)
    question, plan, text_cot = generator.trace(meta, cfg.trajectory.coordinate_decimals)
    input_png, steps = to_png(image), []
    for rationale, action in plan:
        step_image = None
        if action is not None:
            result = executor.execute(action, image, state=state)
            if result.issue is not None:
                raise RuntimeError(f"{uni_task} record {index}: executor refused {action}: {result.issue}")
            image, state, step_image = result.image, result.state, to_png(result.image)
        steps.append(RecordStep(rationale=rationale, action=action, image=step_image))
    return Record(
        id=f"{SOURCE}/{split}/{uni_task}/{index:06d}", source=SOURCE, uni_task=uni_task,
        skills=skills_of(action for _, action in plan), question=question, choices=[],
        input_images=[input_png], steps=steps, final_answer=generator.solve(meta),
        answer_type=generator.answer_type, text_cot=text_cot,
        meta={"split": split, "index": index, **meta},
    )


def generate(split: str, count: int, cfg: Config, uni_tasks: tuple[str, ...] | None = None,
             start: int = 0) -> Iterator[Record]:
    """``count`` records per Uni-Task for one split, interleaving the tasks."""
    from omni_r1.executor import Executor

    executor = Executor(cfg.executor)
    tasks = uni_tasks or tuple(GENERATORS)
    for index in range(start, start + count):
        for uni_task in tasks:
            yield make_record(uni_task, split, index, cfg, executor)
