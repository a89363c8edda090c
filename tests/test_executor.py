"""Pixel-level tests of the action executor (v_t = Exec(a_t, v_{t-1}), paper Appendix A)."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from omni_r1.config import Config, ExecutorConfig
from omni_r1.executor import (
    RESAMPLE,
    TRANSITIONS,
    ExecutionError,
    Executor,
    pixel_box,
    register_transition,
)
from omni_r1.grid import GridState
from omni_r1.trajectory import BBox, IssueKind, Line, Mark, Pred, Step, Trajectory, Zoom

QUADRANTS = {
    "top_left": (200, 30, 30),
    "top_right": (30, 200, 30),
    "bottom_left": (30, 30, 200),
    "bottom_right": (220, 220, 40),
}
BACKGROUND = (128, 128, 128)


@pytest.fixture
def ecfg(cfg: Config) -> ExecutorConfig:
    return cfg.executor


@pytest.fixture
def executor(ecfg: ExecutorConfig) -> Executor:
    return Executor(ecfg)


def quadrant_image(width: int, height: int) -> Image.Image:
    """Four flat colours, one per quadrant (split at width // 2, height // 2)."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste(QUADRANTS["top_left"], (0, 0, half_w, half_h))
    image.paste(QUADRANTS["top_right"], (half_w, 0, width, half_h))
    image.paste(QUADRANTS["bottom_left"], (0, half_h, half_w, height))
    image.paste(QUADRANTS["bottom_right"], (half_w, half_h, width, height))
    return image


def flat(ecfg: ExecutorConfig) -> Image.Image:
    return Image.new("RGB", (ecfg.resolution, ecfg.resolution), BACKGROUND)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- ZOOM


def test_zoom_equals_independent_crop_and_resize(executor: Executor, ecfg: ExecutorConfig) -> None:
    image = quadrant_image(200, 120)
    action = Zoom(x=0.3, y=0.25, w=0.4, h=0.5)
    # Edges to the nearest pixel boundary: 0.3*200=60, 0.7*200=140, 0.25*120=30, 0.75*120=90.
    expected = image.crop((60, 30, 140, 90)).resize(
        (ecfg.resolution, ecfg.resolution), RESAMPLE[ecfg.resample]
    )
    result = executor.execute(action, image)
    assert result.issue is None
    assert result.image.size == (ecfg.resolution, ecfg.resolution)
    assert result.image.tobytes() == expected.tobytes()


def test_zoom_into_one_quadrant_keeps_only_its_colour(executor: Executor) -> None:
    image = quadrant_image(200, 120)
    result = executor.execute(Zoom(x=0.55, y=0.6, w=0.4, h=0.35), image)  # inside bottom right
    colours = {colour for _, colour in result.image.getcolors(maxcolors=1 << 16)}
    assert colours == {QUADRANTS["bottom_right"]}


def test_zoom_on_the_centre_shows_all_four_quadrants(
    executor: Executor, ecfg: ExecutorConfig
) -> None:
    image = quadrant_image(200, 120)
    result = executor.execute(Zoom(x=0.25, y=0.25, w=0.5, h=0.5), image)
    side = ecfg.resolution
    corners = {
        "top_left": (1, 1),
        "top_right": (side - 2, 1),
        "bottom_left": (1, side - 2),
        "bottom_right": (side - 2, side - 2),
    }
    for quadrant, xy in corners.items():
        assert result.image.getpixel(xy) == QUADRANTS[quadrant], quadrant


def test_pixel_box_rounds_edges_and_keeps_one_pixel() -> None:
    assert pixel_box(0.3, 0.25, 0.4, 0.5, (200, 120)) == (60, 30, 140, 90)
    # 0.0125 * 100 = 1.25 -> 1; 0.0175 * 100 = 1.75 -> 2: half-up rounding of each edge.
    assert pixel_box(0.0125, 0.0125, 0.005, 0.005, (100, 100)) == (1, 1, 2, 2)
    # A sub-pixel box at the far edge still keeps one pixel inside the image.
    assert pixel_box(0.999, 0.999, 0.001, 0.001, (10, 10)) == (9, 9, 10, 10)


# --------------------------------------------------------------------------- BBOX


def test_bbox_outline_has_box_colour_inside_and_outside_unchanged(
    executor: Executor, ecfg: ExecutorConfig
) -> None:
    side = ecfg.resolution
    result = executor.execute(BBox(x=0.25, y=0.25, w=0.5, h=0.5), flat(ecfg))
    left, top, right, bottom = pixel_box(0.25, 0.25, 0.5, 0.5, (side, side))
    image = result.image
    for x in range(left, right):
        assert image.getpixel((x, top)) == ecfg.box_color
        assert image.getpixel((x, bottom - 1)) == ecfg.box_color
    for y in range(top, bottom):
        assert image.getpixel((left, y)) == ecfg.box_color
        assert image.getpixel((right - 1, y)) == ecfg.box_color
    centre = ((left + right) // 2, (top + bottom) // 2)
    assert image.getpixel(centre) == BACKGROUND
    assert image.getpixel((1, 1)) == BACKGROUND
    assert image.getpixel((side - 2, side - 2)) == BACKGROUND


def test_bbox_leaves_the_input_image_untouched(executor: Executor, ecfg: ExecutorConfig) -> None:
    image = flat(ecfg)
    before = image.tobytes()
    executor.execute(BBox(x=0.1, y=0.1, w=0.5, h=0.5), image)
    assert image.tobytes() == before


# --------------------------------------------------------------------------- MARK


def test_mark_centre_has_mark_colour(executor: Executor, ecfg: ExecutorConfig) -> None:
    side = ecfg.resolution
    result = executor.execute(Mark(x=0.25, y=0.75), flat(ecfg))
    centre = (math.floor(0.25 * side), math.floor(0.75 * side))
    assert result.image.getpixel(centre) == ecfg.mark_color
    assert result.image.getpixel((side - 2, 1)) == BACKGROUND


def test_mark_label_changes_the_image(executor: Executor, ecfg: ExecutorConfig) -> None:
    plain = executor.execute(Mark(x=0.3, y=0.5), flat(ecfg)).image
    labelled = executor.execute(Mark(x=0.3, y=0.5, label="A"), flat(ecfg)).image
    other = executor.execute(Mark(x=0.3, y=0.5, label="B"), flat(ecfg)).image
    assert plain.tobytes() != labelled.tobytes()
    assert labelled.tobytes() != other.tobytes()
    colours = {colour for _, colour in labelled.getcolors(maxcolors=1 << 16)}
    assert ecfg.label_color in colours


# --------------------------------------------------------------------------- LINE


def test_line_pixels_along_the_segment(executor: Executor, ecfg: ExecutorConfig) -> None:
    side = ecfg.resolution
    action = Line(x1=0.1, y1=0.8, x2=0.9, y2=0.2)
    image = executor.execute(action, flat(ecfg)).image
    start = (math.floor(0.1 * side), math.floor(0.8 * side))
    end = (math.floor(0.9 * side), math.floor(0.2 * side))
    for step in range(11):
        t = step / 10
        point = (
            round(start[0] + t * (end[0] - start[0])),
            round(start[1] + t * (end[1] - start[1])),
        )
        assert image.getpixel(point) == ecfg.line_color, point
    assert image.getpixel((1, 1)) == BACKGROUND
    assert image.getpixel((side - 2, side - 2)) == BACKGROUND


# --------------------------------------------------------------------------- PRED

MAZE = """
#..G
A.#.
....
"""


def agent_pixel(state: GridState, ecfg: ExecutorConfig) -> tuple[int, int]:
    left, top, right, bottom = state.cell_box(state.agent, ecfg.resolution)
    return (left + right) // 2, (top + bottom) // 2


def test_grid_move_moves_the_agent(executor: Executor, ecfg: ExecutorConfig) -> None:
    state = GridState.from_ascii(MAZE)
    start = state.render(ecfg)
    result = executor.execute(Pred(transition="grid_move", delta="right"), start, state)
    assert result.issue is None
    assert result.state.agent == (1, 1)
    assert result.state.visited == ((1, 0),)
    assert result.image.getpixel(agent_pixel(result.state, ecfg)) == ecfg.agent_color
    assert start.getpixel(agent_pixel(result.state, ecfg)) == ecfg.floor_color
    assert result.image.getpixel(agent_pixel(state, ecfg)) == ecfg.line_color  # the trail


def test_grid_move_sequence_reaches_the_goal(executor: Executor) -> None:
    state = GridState.from_ascii(MAZE)
    result = executor.execute(
        Pred(transition="grid_move", delta="right, up, Right, right"), None, state
    )
    assert result.issue is None
    assert result.state.at_goal
    assert result.state.to_ascii().splitlines()[0] == "#..A"


def test_shortest_path_solves_the_maze() -> None:
    state = GridState.from_ascii(MAZE)
    # The only 4-move route: right to (1,1), up to (0,1), then right twice to the goal (0,3).
    assert state.shortest_path() == ("right", "up", "right", "right")
    walled_in = GridState.from_ascii("A#G\n.#.")
    assert walled_in.shortest_path() is None


def test_grid_render_colours(ecfg: ExecutorConfig) -> None:
    state = GridState.from_ascii(MAZE)
    image = state.render(ecfg)
    assert image.size == (ecfg.resolution, ecfg.resolution)
    assert image.mode == "RGB"

    def centre(cell: tuple[int, int]) -> tuple[int, int]:
        left, top, right, bottom = state.cell_box(cell, ecfg.resolution)
        return (left + right) // 2, (top + bottom) // 2

    assert image.getpixel(centre((0, 0))) == ecfg.wall_color
    assert image.getpixel(centre((0, 1))) == ecfg.floor_color
    assert image.getpixel(centre((0, 3))) == ecfg.goal_color
    assert image.getpixel(centre((1, 0))) == ecfg.agent_color


@pytest.mark.parametrize(
    "delta", ["up", "left", "right, right", "right, up, up", "north", "up,,left"]
)
def test_grid_move_bad_delta_is_bad_argument(executor: Executor, delta: str) -> None:
    state = GridState.from_ascii(MAZE)
    result = executor.execute(Pred(transition="grid_move", delta=delta), None, state)
    assert result.image is None
    assert result.issue.kind == IssueKind.BAD_ARGUMENT
    assert result.state is state


def test_unknown_transition_is_unknown_action(executor: Executor) -> None:
    state = GridState.from_ascii(MAZE)
    result = executor.execute(Pred(transition="teleport", delta="up"), None, state)
    assert result.image is None
    assert result.issue.kind == IssueKind.UNKNOWN_ACTION
    assert "teleport" in result.issue.message


@pytest.mark.parametrize("state", [None, "not a grid"])
def test_pred_without_its_state_is_bad_argument(executor: Executor, state: object) -> None:
    result = executor.execute(Pred(transition="grid_move", delta="up"), None, state)
    assert result.image is None
    assert result.issue.kind == IssueKind.BAD_ARGUMENT


def test_register_transition_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="grid_move"):
        register_transition("grid_move")(lambda state, delta: state)
    assert "grid_move" in TRANSITIONS


def test_grid_state_rejects_agent_in_wall() -> None:
    with pytest.raises(ValueError, match="agent"):
        GridState(rows=2, cols=2, walls=frozenset({(0, 0)}), agent=(0, 0), goal=(1, 1))


# --------------------------------------------------------------------------- never raises


def test_drawing_without_an_image_is_bad_argument(executor: Executor) -> None:
    for action in (Zoom(x=0, y=0, w=1, h=1), BBox(x=0, y=0, w=1, h=1), Mark(x=0.5, y=0.5)):
        result = executor.execute(action, None)
        assert result.image is None
        assert result.issue.kind == IssueKind.BAD_ARGUMENT


def test_unvalidated_arguments_are_bad_argument(executor: Executor, ecfg: ExecutorConfig) -> None:
    bypassed = Zoom.model_construct(x=float("nan"), y=0.0, w=0.5, h=0.5)  # skips validation
    result = executor.execute(bypassed, flat(ecfg))
    assert result.issue.kind == IssueKind.BAD_ARGUMENT
    assert result.image is None


def test_non_action_is_unknown_action(executor: Executor, ecfg: ExecutorConfig) -> None:
    result = executor.execute("ZOOM(0, 0, 1, 1)", flat(ecfg))
    assert result.issue.kind == IssueKind.UNKNOWN_ACTION


# --------------------------------------------------------------------------- inputs, determinism


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_non_square_non_rgb_input(executor: Executor, ecfg: ExecutorConfig, mode: str) -> None:
    image = quadrant_image(90, 50).convert(mode)
    side = ecfg.resolution
    for action in (
        Zoom(x=0.0, y=0.0, w=0.5, h=0.5),
        BBox(x=0.1, y=0.1, w=0.3, h=0.3),
        Mark(x=0.5, y=0.5, label="x"),
        Line(x1=0.0, y1=0.0, x2=1.0, y2=1.0),
    ):
        result = executor.execute(action, image)
        assert result.issue is None, action
        assert result.image.mode == "RGB"
        assert result.image.size == (side, side)
    # BBOX on a non-square input equals BBOX on the input resized to the canvas first.
    canvas = image.convert("RGB").resize((side, side), RESAMPLE[ecfg.resample])
    bbox = BBox(x=0.1, y=0.1, w=0.3, h=0.3)
    assert (
        executor.execute(bbox, image).image.tobytes()
        == executor.execute(bbox, canvas).image.tobytes()
    )


def test_same_input_gives_byte_identical_output(ecfg: ExecutorConfig) -> None:
    actions = [
        BBox(x=0.2, y=0.3, w=0.4, h=0.2),
        Zoom(x=0.1, y=0.2, w=0.6, h=0.6),
        Mark(x=0.4, y=0.6, label="cat 2"),
        Line(x1=0.05, y1=0.9, x2=0.7, y2=0.15),
    ]
    runs = [Executor(ecfg).execute_trajectory(actions, quadrant_image(120, 80)) for _ in range(2)]
    maze_runs = [
        Executor(ecfg).execute(
            Pred(transition="grid_move", delta="right,up"), None, GridState.from_ascii(MAZE)
        )
        for _ in range(2)
    ]
    for first, second in zip(
        runs[0] + [maze_runs[0].image], runs[1] + [maze_runs[1].image], strict=True
    ):
        assert first.tobytes() == second.tobytes()
        assert png_bytes(first) == png_bytes(second)


# --------------------------------------------------------------------------- trajectories


def test_execute_trajectory_chains_images_and_state(
    executor: Executor, ecfg: ExecutorConfig
) -> None:
    image = quadrant_image(200, 120)
    zoom_then_box = Trajectory(
        question="What is in the top left?",
        input_images=(image,),
        steps=(
            Step(rationale="Zoom in.", action=Zoom(x=0.0, y=0.0, w=0.5, h=0.5), has_image=True),
            Step(rationale="Nothing to draw."),
            Step(
                rationale="Outline it.", action=BBox(x=0.25, y=0.25, w=0.5, h=0.5), has_image=True
            ),
        ),
        final_answer="red",
    )
    images = executor.execute_trajectory(zoom_then_box, None)
    assert len(images) == 2
    zoomed = executor.execute(Zoom(x=0.0, y=0.0, w=0.5, h=0.5), image).image
    assert images[0].tobytes() == zoomed.tobytes()
    assert (
        images[1].tobytes()
        == executor.execute(zoom_then_box.steps[2].action, zoomed).image.tobytes()
    )

    state = GridState.from_ascii(MAZE)
    moves = [Pred(transition="grid_move", delta=d) for d in ("right", "up", "right", "right")]
    maze_images = executor.execute_trajectory(moves, state.render(ecfg), state)
    final = GridState.from_ascii(MAZE)
    for move in ("right", "up", "right", "right"):
        final = final.moved(move)
    assert maze_images[-1].tobytes() == final.render(ecfg).tobytes()


def test_execute_trajectory_names_the_failing_step(executor: Executor) -> None:
    state = GridState.from_ascii(MAZE)
    moves = [
        Pred(transition="grid_move", delta="right"),
        Pred(transition="grid_move", delta="down, down"),
    ]
    with pytest.raises(ExecutionError, match="step 2: bad_argument"):
        executor.execute_trajectory(moves, None, state)
