"""Synthetic Uni-Tasks: answers re-solved from the stored parameters and from the pixels."""

from __future__ import annotations

import math

import pytest

from omni_r1.data import synthetic
from omni_r1.data.records import UNI_SKILLS, UNI_TASKS, from_png, record_to_trajectory
from omni_r1.executor import Executor
from omni_r1.trajectory import parse_trajectory, render_trajectory

PER_TASK = 6


@pytest.fixture(scope="module")
def records(cfg):
    return list(synthetic.generate("train", PER_TASK, cfg))


def by_task(records, task):
    return [r for r in records if r.uni_task == task]


def test_all_four_tasks_and_skills_with_text_cot(records, cfg):
    assert {r.uni_task for r in records} == set(UNI_TASKS)
    assert {s for r in records for s in r.skills} == set(UNI_SKILLS)
    side = cfg.executor.resolution
    for record in records:
        assert record.text_cot and all(record.text_cot)
        assert from_png(record.input_images[0]).size == (side, side)
        assert all(from_png(s.image).size == (side, side) for s in record.steps if s.image)


def test_answers_re_solve_from_parameters(records):
    for record in records:
        assert synthetic.solve(record.uni_task, record.meta) == record.final_answer


def test_traces_parse_back_and_re_execute_to_the_same_images(records, cfg):
    executor = Executor(cfg.executor)
    for record in records:
        traj = record_to_trajectory(record)
        parsed = parse_trajectory(render_trajectory(traj))
        assert parsed.ok, parsed.issues
        assert [s.action for s in parsed.steps] == [s.action for s in record.steps]
        state = synthetic.grid_state(record.meta) if record.uni_task == "vision_operational" else None
        images = executor.execute_trajectory(traj, None, state)
        stored = [from_png(s.image) for s in record.steps if s.image is not None]
        assert [im.tobytes() for im in images] == [im.tobytes() for im in stored]


def test_scene_answer_is_the_colour_at_the_target(records):
    for record in by_task(records, "natural"):
        target = record.meta["items"][record.meta["target"]]
        centre = (target["x"] + target["side"] // 2, target["y"] + target["side"] * 3 // 4)
        pixel = from_png(record.input_images[0]).getpixel(centre)
        assert pixel == synthetic.COLOURS[record.final_answer]
        shapes = [item["shape"] for item in record.meta["items"]]
        assert shapes.count(target["shape"]) == 1  # the asked shape is unique in the scene


def test_chart_answer_matches_the_bar_height_in_pixels(records):
    for record in by_task(records, "structured"):
        meta, geo = record.meta, synthetic.chart_geometry(record.meta)
        image = from_png(record.input_images[0])
        column = round(synthetic.CHART_LEFT + 2 + (meta["asked"] + 0.5) * geo["slot"])
        bar = [y for y in range(image.height) if image.getpixel((column, y)) == tuple(meta["bar_colour"])]
        assert round((max(bar) + 1 - min(bar)) / geo["unit"]) == int(record.final_answer)


def test_geometry_answer_is_pythagoras_and_sides_match_the_drawing(records):
    for record in by_task(records, "diagrammatic"):
        meta = record.meta
        assert math.isclose(float(record.final_answer), math.hypot(meta["width"], meta["height"]))
        assert float(record.final_answer).is_integer()
        assert abs(meta["w_px"] / meta["h_px"] - meta["width"] / meta["height"]) < 0.15


def test_grid_path_is_shortest_and_reaches_the_goal(records, cfg):
    for record in by_task(records, "vision_operational"):
        moves = [s.action.delta for s in record.steps if s.action is not None]
        state = synthetic.grid_state(record.meta)
        for move in moves:
            state = state.moved(move)
        assert state.at_goal and len(moves) == int(record.final_answer)
        assert 1 <= len(moves) <= cfg.data.synthetic.grid_max_moves
        assert _bfs_length(record.meta) == len(moves)


def _bfs_length(meta):
    walls = {tuple(w) for w in meta["walls"]}
    frontier, seen, steps = {tuple(meta["agent"])}, {tuple(meta["agent"])}, 0
    while tuple(meta["goal"]) not in frontier:
        frontier = {(r + dr, c + dc) for r, c in frontier for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
                    if 0 <= r + dr < meta["rows"] and 0 <= c + dc < meta["cols"] and (r + dr, c + dc) not in walls} - seen
        seen |= frontier
        steps += 1
    return steps


def test_generation_is_seeded(cfg, records):
    again = list(synthetic.generate("train", 1, cfg))
    assert again == records[: len(again)]
    other_seed = cfg.model_copy(update={"run": cfg.run.model_copy(update={"seed": cfg.run.seed + 1})})
    assert list(synthetic.generate("train", 1, other_seed)) != again


def test_difficulty_knobs_are_used(cfg):
    knobs = cfg.data.synthetic.model_copy(update={"chart_bars": 6, "scene_distractors": 2, "grid_size": 7})
    harder = cfg.model_copy(update={"data": cfg.data.model_copy(update={"synthetic": knobs})})
    records = list(synthetic.generate("train", 1, harder, uni_tasks=("structured", "natural", "vision_operational")))
    assert len(records[0].meta["values"]) == 6
    assert len(records[1].meta["items"]) == 3
    assert records[2].meta["rows"] == 7


def test_initial_state_starts_the_grid_tasks_only(records, cfg):
    executor = Executor(cfg.executor)
    for record in records:
        state = synthetic.initial_state(record)
        if record.uni_task != "vision_operational":
            assert state is None
            continue
        # the state renders the input image, and the record's PRED steps replay from it
        assert state.render(cfg.executor).tobytes() == from_png(record.input_images[0]).tobytes()
        images = executor.execute_trajectory(record_to_trajectory(record), None, state)
        assert [im.tobytes() for im in images] == [from_png(s.image).tobytes() for s in record.steps if s.image]
    other_source = by_task(records, "vision_operational")[0].model_copy(update={"source": "vicbench"})
    assert synthetic.initial_state(other_source) is None  # real records carry no grid
