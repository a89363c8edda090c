"""The grid world of the vision-operational Uni-Task: a maze state, its shortest path, sampling.

One home for the maze used by the executor's ``PRED(grid_move: ...)`` transition
(:mod:`omni_r1.executor`), the synthetic ``vision_operational`` records
(:mod:`omni_r1.data.synthetic`) and the executor gallery's maze scene
(:mod:`omni_r1.data.action_scenes`). A :class:`GridState` draws itself with the executor's
colours (``executor.wall_color`` and friends); mazes are sampled with
``data.synthetic.grid_size``, ``grid_wall_fraction`` and ``grid_max_moves``.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from omni_r1.config import ExecutorConfig

PixelBox = tuple[int, int, int, int]  # (left, top, right, bottom); right and bottom exclusive
Cell = tuple[int, int]  # (row, col) of a grid cell, row 0 at the top
MAZE_ATTEMPTS = 1000  # rejection-sampling bound of sample_maze


class MoveError(ValueError):
    """A move the grid does not allow (unknown direction, off the grid, into a wall)."""


GRID_MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
GRID_SYMBOLS = {"wall": "#", "free": ".", "agent": "A", "goal": "G"}


@dataclass(frozen=True)
class GridState:
    """A maze: ``rows`` x ``cols`` cells, walls, the agent, the goal, the visited trail.

    Cells are ``(row, col)`` with ``(0, 0)`` at the top left. ``visited`` lists the cells
    the agent has left, oldest first. Construction checks that the agent, the goal and
    the walls lie inside the grid and that agent and goal are not walls.
    """

    rows: int
    cols: int
    walls: frozenset[Cell]
    agent: Cell
    goal: Cell
    visited: tuple[Cell, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "walls", frozenset(tuple(cell) for cell in self.walls))
        object.__setattr__(self, "agent", tuple(self.agent))
        object.__setattr__(self, "goal", tuple(self.goal))
        object.__setattr__(self, "visited", tuple(tuple(cell) for cell in self.visited))
        if self.rows <= 0 or self.cols <= 0:
            raise ValueError(f"grid must have rows, cols > 0, got {self.rows}x{self.cols}")
        for name, cell in (("agent", self.agent), ("goal", self.goal)):
            if not self.inside(cell):
                raise ValueError(f"{name} {cell} lies outside the {self.rows}x{self.cols} grid")
            if cell in self.walls:
                raise ValueError(f"{name} {cell} is a wall")
        outside = sorted(cell for cell in self.walls if not self.inside(cell))
        if outside:
            raise ValueError(f"walls {outside} lie outside the {self.rows}x{self.cols} grid")

    @classmethod
    def from_ascii(cls, text: str) -> GridState:
        """Read rows of ``#`` (wall), ``.`` (free), ``A`` (agent), ``G`` (goal)."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if not lines or len({len(line) for line in lines}) != 1:
            raise ValueError("grid text must be non-empty rows of equal length")
        cells = {(r, c): ch for r, line in enumerate(lines) for c, ch in enumerate(line)}
        unknown = sorted({ch for ch in cells.values()} - set(GRID_SYMBOLS.values()))
        if unknown:
            raise ValueError(f"unknown grid symbols {unknown}; use {sorted(GRID_SYMBOLS.values())}")
        agents = [cell for cell, ch in cells.items() if ch == "A"]
        goals = [cell for cell, ch in cells.items() if ch == "G"]
        if len(agents) != 1 or len(goals) != 1:
            raise ValueError(f"grid needs one A and one G, got {len(agents)} and {len(goals)}")
        walls = frozenset(cell for cell, ch in cells.items() if ch == "#")
        return cls(len(lines), len(lines[0]), walls, agents[0], goals[0])

    def to_ascii(self) -> str:
        """The grid as :meth:`from_ascii` reads it (the agent wins over the goal)."""

        def symbol(cell: Cell) -> str:
            if cell == self.agent:
                return "A"
            if cell == self.goal:
                return "G"
            return "#" if cell in self.walls else "."

        return "\n".join(
            "".join(symbol((r, c)) for c in range(self.cols)) for r in range(self.rows)
        )

    def inside(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.rows and 0 <= cell[1] < self.cols

    def is_free(self, cell: Cell) -> bool:
        return self.inside(cell) and cell not in self.walls

    @property
    def at_goal(self) -> bool:
        return self.agent == self.goal

    def moved(self, direction: str) -> GridState:
        """The state after one move ``up``, ``down``, ``left`` or ``right``.

        Raises:
            MoveError: an unknown direction, or a move off the grid or into a wall.
        """
        if direction not in GRID_MOVES:
            raise MoveError(f"unknown move {direction!r} (known: {', '.join(GRID_MOVES)})")
        d_row, d_col = GRID_MOVES[direction]
        target = (self.agent[0] + d_row, self.agent[1] + d_col)
        if not self.inside(target):
            raise MoveError(f"move {direction} from {self.agent} leaves the grid")
        if target in self.walls:
            raise MoveError(f"move {direction} from {self.agent} runs into a wall")
        return dataclasses.replace(self, agent=target, visited=(*self.visited, self.agent))

    def shortest_path(self) -> tuple[str, ...] | None:
        """Moves of a shortest agent-to-goal path, or None when the goal is unreachable.

        Breadth-first search trying moves in the order of :data:`GRID_MOVES`, so the same
        grid always gives the same path.
        """
        parents: dict[Cell, tuple[Cell, str] | None] = {self.agent: None}
        queue = collections.deque([self.agent])
        while queue:
            cell = queue.popleft()
            if cell == self.goal:
                moves: list[str] = []
                while (link := parents[cell]) is not None:
                    cell, move = link
                    moves.append(move)
                return tuple(reversed(moves))
            for move, (d_row, d_col) in GRID_MOVES.items():
                nxt = (cell[0] + d_row, cell[1] + d_col)
                if self.is_free(nxt) and nxt not in parents:
                    parents[nxt] = (cell, move)
                    queue.append(nxt)
        return None

    def cell_size(self, resolution: int) -> int:
        """Side of one square cell in pixels when the grid is drawn at ``resolution``."""
        side = resolution // max(self.rows, self.cols)
        if side < 1:
            raise ValueError(f"{self.rows}x{self.cols} grid does not fit in {resolution} pixels")
        return side

    def cell_box(self, cell: Cell, resolution: int) -> PixelBox:
        """Pixel box ``(left, top, right, bottom)`` of a cell; the grid is centred."""
        side = self.cell_size(resolution)
        left0 = (resolution - side * self.cols) // 2
        top0 = (resolution - side * self.rows) // 2
        left, top = left0 + cell[1] * side, top0 + cell[0] * side
        return left, top, left + side, top + side

    def render(self, cfg: ExecutorConfig) -> Image.Image:
        """Draw the grid at R x R: walls and margin ``wall_color``, free cells
        ``floor_color`` (inset by one pixel when cells are at least 6 pixels, so the grid
        lines show), goal cell ``goal_color``, trail squares ``line_color``, agent disc
        ``agent_color``."""
        side = cfg.resolution
        cell_px = self.cell_size(side)
        inset = 1 if cell_px >= 6 else 0
        canvas = Image.new("RGB", (side, side), cfg.wall_color)
        draw = ImageDraw.Draw(canvas)
        for row in range(self.rows):
            for col in range(self.cols):
                if (row, col) in self.walls:
                    continue
                left, top, right, bottom = self.cell_box((row, col), side)
                color = cfg.goal_color if (row, col) == self.goal else cfg.floor_color
                draw.rectangle(_shrink((left, top, right, bottom), inset), fill=color)
        trail_pad = (cell_px - max(cell_px // 3, 1)) // 2
        for cell in dict.fromkeys(self.visited):  # each cell once, in first-visit order
            draw.rectangle(_shrink(self.cell_box(cell, side), trail_pad), fill=cfg.line_color)
        agent_box = _shrink(self.cell_box(self.agent, side), cell_px // 6)
        draw.ellipse(agent_box, fill=cfg.agent_color)
        return canvas


def _shrink(box: PixelBox, pad: int) -> tuple[int, int, int, int]:
    """An exclusive pixel box, shrunk by ``pad`` on every side, as inclusive PIL bounds."""
    left, top, right, bottom = box
    return left + pad, top + pad, right - 1 - pad, bottom - 1 - pad


def sample_maze(
    rng: random.Random, size: int, wall_fraction: float, max_moves: int
) -> tuple[GridState, tuple[str, ...]]:
    """A ``size`` x ``size`` maze whose shortest agent-to-goal path has 1..``max_moves`` moves.

    Rejection sampling: ``round(wall_fraction * size**2)`` walls drawn without replacement,
    then agent and goal among the free cells, until the goal is reachable within
    ``max_moves`` (at most :data:`MAZE_ATTEMPTS` draws).

    Returns:
        The maze and the moves of its shortest path (:meth:`GridState.shortest_path`).

    Raises:
        RuntimeError: no such maze within :data:`MAZE_ATTEMPTS` draws.
    """
    cells = [(r, c) for r in range(size) for c in range(size)]
    for _ in range(MAZE_ATTEMPTS):
        walls = sorted(rng.sample(cells, round(wall_fraction * size * size)))
        free = [cell for cell in cells if cell not in set(walls)]
        agent, goal = rng.sample(free, 2)
        state = GridState(size, size, frozenset(walls), agent, goal)
        path = state.shortest_path()
        if path is not None and 1 <= len(path) <= max_moves:
            return state, path
    raise RuntimeError(
        f"no {size}x{size} maze with a 1-{max_moves} move path in {MAZE_ATTEMPTS} draws; "
        "lower data.synthetic.grid_wall_fraction"
    )
