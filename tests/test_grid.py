"""The grid world: maze sampling under the synthetic grid settings, moves and their errors."""

from __future__ import annotations

import random

import pytest

from omni_r1.grid import GridState, MoveError, sample_maze


def test_sampled_mazes_are_seeded_and_solvable_within_the_bound() -> None:
    for seed in range(20):
        state, path = sample_maze(random.Random(seed), size=5, wall_fraction=0.2, max_moves=6)
        again, _ = sample_maze(random.Random(seed), size=5, wall_fraction=0.2, max_moves=6)
        assert state == again
        assert (state.rows, state.cols) == (5, 5) and len(state.walls) == 5  # round(0.2 * 25)
        assert 1 <= len(path) <= 6 and path == state.shortest_path()
        for move in path:
            state = state.moved(move)
        assert state.at_goal


def test_an_unsatisfiable_maze_request_fails_naming_the_setting() -> None:
    # agent and goal are distinct cells, so no maze has a path of zero moves
    with pytest.raises(RuntimeError, match="grid_wall_fraction"):
        sample_maze(random.Random(0), size=3, wall_fraction=0.5, max_moves=0)


def test_moves_off_the_grid_or_into_a_wall_raise_move_error() -> None:
    state = GridState.from_ascii("A#\n.G")
    with pytest.raises(MoveError, match="wall"):
        state.moved("right")
    with pytest.raises(MoveError, match="leaves the grid"):
        state.moved("up")
    with pytest.raises(MoveError, match="unknown move"):
        state.moved("north")
    assert state.moved("down").agent == (1, 0)
