"""Demonstration scenes of the executor gallery: seeded, executable, all five actions."""

from __future__ import annotations

from omni_r1.config import Config
from omni_r1.data.action_scenes import build_examples
from omni_r1.executor import Executor
from omni_r1.grid import GridState
from omni_r1.trajectory import render_trajectory


def example_fingerprint(examples: list) -> list[tuple[str, str, bytes]]:
    return [
        (name, render_trajectory(traj), traj.input_images[0].tobytes())
        for name, traj, _ in examples
    ]


def test_examples_are_seeded_and_execute_cleanly(cfg: Config) -> None:
    decimals = cfg.trajectory.coordinate_decimals
    first = build_examples(4, 7, cfg.executor, decimals, cfg.data.synthetic)
    again = build_examples(4, 7, cfg.executor, decimals, cfg.data.synthetic)
    other = build_examples(4, 8, cfg.executor, decimals, cfg.data.synthetic)
    assert example_fingerprint(first) == example_fingerprint(again)
    assert example_fingerprint(first) != example_fingerprint(other)
    kinds = {step.action.kind for _, traj, _ in first for step in traj.steps if step.action}
    assert kinds == {"ZOOM", "BBOX", "MARK", "LINE", "PRED"}
    executor = Executor(cfg.executor)
    for _, traj, state in first:
        images = executor.execute_trajectory(traj, None, state)
        assert len(images) == sum(step.has_image for step in traj.steps)


def test_maze_path_reaches_the_goal(cfg: Config) -> None:
    examples = build_examples(
        4, 3, cfg.executor, cfg.trajectory.coordinate_decimals, cfg.data.synthetic
    )
    _, traj, state = examples[3]
    assert isinstance(state, GridState)
    for step in traj.steps:
        for move in step.action.delta.split(","):
            state = state.moved(move.strip())
    assert state.at_goal


def test_maze_scene_uses_the_synthetic_grid_settings(cfg: Config) -> None:
    knobs = cfg.data.synthetic.model_copy(update={"grid_size": 7, "grid_max_moves": 3})
    for seed in range(5):
        examples = build_examples(4, seed, cfg.executor, cfg.trajectory.coordinate_decimals, knobs)
        _, traj, state = examples[3]
        assert (state.rows, state.cols) == (7, 7)
        assert len(state.walls) == round(knobs.grid_wall_fraction * 49)
        moves = [m for step in traj.steps for m in step.action.delta.split(",")]
        assert 1 <= len(moves) <= 3
