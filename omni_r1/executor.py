"""The deterministic action executor: v_t = Exec(a_t, v_{t-1}) (paper, Appendix A).

At train time the executor renders the target image of every step from its atomic action
and the previous image; at RL and inference time the same rendering of the model's own
action is a reference. The same input always gives byte-identical output: only PIL
drawing and resizing, no randomness, no font files (labels use PIL's built-in bitmap
font).

Geometry (coordinates normalised to [0, 1] with (0, 0) at the top left of v_{t-1}):

- Box edges. On an axis of ``n`` pixels a normalised edge ``e`` lies on the pixel
  boundary ``floor(e * n + 0.5)`` (nearest boundary, halves round up), clamped to
  ``[0, n]``. A box keeps at least one pixel per axis. See :func:`pixel_box`.
- Points. A normalised point ``v`` falls in pixel ``min(floor(v * n), n - 1)``, the pixel
  that contains it. See :func:`pixel_point`.

Actions (every output is RGB at ``cfg.resolution`` x ``cfg.resolution``, called R):

- ``ZOOM(x, y, w, h)``: crop the box from v_{t-1} at its own size (after conversion to
  RGB) and resize the crop to R x R with ``cfg.resample``. The box's aspect ratio is not
  kept: the model's images are square.
- ``BBOX``, ``MARK``, ``LINE``: v_{t-1} is first brought onto the canvas (converted to RGB,
  alpha dropped; resized to R x R with ``cfg.resample`` when its size differs, aspect
  ratio not kept, so normalised coordinates keep their meaning), then drawn on a copy.
  BBOX draws the outline inside the box (``box_color``, ``line_width``); MARK draws a
  disc of ``mark_radius`` in ``mark_color`` on a contrasting (black or white) halo, and
  the optional label beside it in ``label_color`` on a contrasting plate; LINE draws the
  segment in ``line_color``.
- ``PRED(transition: delta)``: the task state is the source of truth. The transition
  named in the action (registry :data:`TRANSITIONS`) maps the state and delta to the
  next state, and the image is that state's ``render(cfg)``; v_{t-1}'s pixels are not
  used. ``grid_move`` moves the agent of a :class:`omni_r1.grid.GridState` maze.

:meth:`Executor.execute` never raises: an unknown transition gives an
``UNKNOWN_ACTION`` issue, any other argument it cannot apply (a missing image or state, a
bad delta, a move into a wall) a ``BAD_ARGUMENT`` issue, both with ``image=None``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image, ImageDraw, ImageFont

from omni_r1.config import ExecutorConfig
from omni_r1.grid import GridState, MoveError
from omni_r1.trajectory import FormatIssue, IssueKind, Step, Trajectory

RGB = tuple[int, int, int]
PixelBox = tuple[int, int, int, int]  # (left, top, right, bottom); right and bottom exclusive

RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ExecutionError(ValueError):
    """An action, delta or state the executor cannot apply."""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one action: the new image and state, or the issue that stopped it."""

    image: Image.Image | None
    state: object | None
    issue: FormatIssue | None

    @property
    def ok(self) -> bool:
        return self.issue is None


# --------------------------------------------------------------------------- geometry


def _unit(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ExecutionError(f"{name}={value!r} is not a number in [0, 1]")
    return float(value)


def _boundary(edge: float, pixels: int) -> int:
    return min(max(math.floor(edge * pixels + 0.5), 0), pixels)


def pixel_box(x: float, y: float, w: float, h: float, size: tuple[int, int]) -> PixelBox:
    """The pixel box of a normalised box on an image of ``size`` = (width, height).

    Each edge goes to its nearest pixel boundary (halves round up); a box that would be
    empty on an axis grows to one pixel (towards the inside of the image).

    Returns:
        ``(left, top, right, bottom)`` with right and bottom exclusive, as ``Image.crop``.
    """
    width, height = size
    x, y, w, h = (_unit(n, v) for n, v in zip("xywh", (x, y, w, h), strict=True))
    if w <= 0 or h <= 0 or x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
        raise ExecutionError(f"box ({x}, {y}, {w}, {h}) is empty or leaves [0, 1]")
    left, right = _span(_boundary(x, width), _boundary(x + w, width), width)
    top, bottom = _span(_boundary(y, height), _boundary(y + h, height), height)
    return left, top, right, bottom


def _span(start: int, end: int, pixels: int) -> tuple[int, int]:
    if end > start:
        return start, end
    start = min(start, pixels - 1)
    return start, start + 1


def pixel_point(x: float, y: float, size: tuple[int, int]) -> tuple[int, int]:
    """The pixel ``(column, row)`` that contains the normalised point ``(x, y)``."""
    width, height = size
    x, y = _unit("x", x), _unit("y", y)
    return min(math.floor(x * width), width - 1), min(math.floor(y * height), height - 1)


def contrast_color(color: RGB) -> RGB:
    """Black for a light colour, white for a dark one (ITU-R BT.601 luma)."""
    red, green, blue = color
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue >= 128 else (255, 255, 255)


# --------------------------------------------------------------------------- drawing


def to_canvas(image: Image.Image, cfg: ExecutorConfig) -> Image.Image:
    """A new RGB copy of ``image`` at R x R (resized with ``cfg.resample`` if needed)."""
    if not isinstance(image, Image.Image):
        raise ExecutionError(f"expected a PIL image, got {type(image).__name__}")
    rgb = image.convert("RGB")  # convert always returns a new image
    side = cfg.resolution
    if rgb.size != (side, side):
        rgb = rgb.resize((side, side), RESAMPLE[cfg.resample])
    return rgb


def zoom(image: Image.Image, action: Any, cfg: ExecutorConfig) -> Image.Image:
    """ZOOM: crop the box of v_{t-1} and resize it to R x R.

    Paper Appendix A.
    """
    if not isinstance(image, Image.Image):
        raise ExecutionError(f"expected a PIL image, got {type(image).__name__}")
    rgb = image.convert("RGB")
    box = pixel_box(action.x, action.y, action.w, action.h, rgb.size)
    side = cfg.resolution
    return rgb.crop(box).resize((side, side), RESAMPLE[cfg.resample])


def draw_bbox(canvas: Image.Image, action: Any, cfg: ExecutorConfig) -> Image.Image:
    """BBOX: the box outline, ``line_width`` pixels wide, inside the box.

    Paper Appendix A.
    """
    left, top, right, bottom = pixel_box(action.x, action.y, action.w, action.h, canvas.size)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left, top, right - 1, bottom - 1), outline=cfg.box_color, width=cfg.line_width)
    return canvas


def draw_mark(canvas: Image.Image, action: Any, cfg: ExecutorConfig) -> Image.Image:
    """MARK: a disc on a contrasting halo at the point, plus the optional label.

    Paper Appendix A.
    """
    cx, cy = pixel_point(action.x, action.y, canvas.size)
    radius = cfg.mark_radius
    halo = radius + cfg.line_width
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((cx - halo, cy - halo, cx + halo, cy + halo), fill=contrast_color(cfg.mark_color))
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=cfg.mark_color)
    if action.label:
        _draw_label(draw, action.label, (cx, cy), halo, canvas.size, cfg)
    return canvas


@functools.cache
def label_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font: no font files, no FreeType, same pixels everywhere."""
    return ImageFont.load_default_imagefont()


def _draw_label(
    draw: ImageDraw.ImageDraw,
    label: str,
    center: tuple[int, int],
    halo: int,
    size: tuple[int, int],
    cfg: ExecutorConfig,
) -> None:
    """The label right of the marker (left of it when it would leave the image)."""
    font = label_font()
    _, _, text_w, text_h = font.getbbox(label)
    cx, cy = center
    left = cx + halo + 2
    if left + text_w + 1 > size[0]:
        left = max(cx - halo - 2 - text_w, 1)
    top = min(max(cy - text_h // 2, 1), max(size[1] - text_h - 1, 1))
    plate = (left - 1, top - 1, left + text_w, top + text_h)
    draw.rectangle(plate, fill=contrast_color(cfg.label_color))
    draw.text((left, top), label, fill=cfg.label_color, font=font)


def draw_line(canvas: Image.Image, action: Any, cfg: ExecutorConfig) -> Image.Image:
    """LINE: the segment between the pixels of its two end points.

    Paper Appendix A.

    PIL draws a wide line as a polygon that can miss its end pixels, so a one-pixel line
    goes on top: every pixel of the digital segment, end points included, is coloured.
    """
    start = pixel_point(action.x1, action.y1, canvas.size)
    end = pixel_point(action.x2, action.y2, canvas.size)
    draw = ImageDraw.Draw(canvas)
    draw.line([start, end], fill=cfg.line_color, width=cfg.line_width)
    draw.line([start, end], fill=cfg.line_color, width=1)
    return canvas


DRAWERS: dict[str, Callable[[Image.Image, Any, ExecutorConfig], Image.Image]] = {
    "BBOX": draw_bbox,
    "MARK": draw_mark,
    "LINE": draw_line,
}


# --------------------------------------------------------------------------- PRED transitions


class RenderableState(Protocol):
    """What a PRED transition returns: a task state that can draw itself."""

    def render(self, cfg: ExecutorConfig) -> Image.Image: ...


Transition = Callable[[Any, str], RenderableState]
TRANSITIONS: dict[str, Transition] = {}


def register_transition(name: str) -> Callable[[Transition], Transition]:
    """Register ``fn(state, delta) -> next_state`` as the PRED transition ``name``.

    The function raises :class:`ExecutionError` for a state of the wrong type or a delta
    it cannot apply; the executor turns that into a ``BAD_ARGUMENT`` issue.
    """

    def decorator(fn: Transition) -> Transition:
        if name in TRANSITIONS:
            raise ValueError(f"transition {name!r} is already registered")
        TRANSITIONS[name] = fn
        return fn

    return decorator


def parse_moves(delta: str) -> tuple[str, ...]:
    """``"up, up,left"`` -> ``("up", "up", "left")`` (case-insensitive)."""
    moves = tuple(part.strip().lower() for part in delta.split(","))
    if not moves or any(not move for move in moves):
        raise ExecutionError(f"delta {delta!r} must be moves separated by commas")
    return moves


@register_transition("grid_move")
def grid_move(state: Any, delta: str) -> GridState:
    """Move the agent of a :class:`GridState` by one or more comma-separated moves.

    PRED, Appendix A.
    """
    if not isinstance(state, GridState):
        raise ExecutionError(f"grid_move needs a GridState, got {type(state).__name__}")
    for number, move in enumerate(parse_moves(delta), start=1):
        try:
            state = state.moved(move)
        except MoveError as err:
            raise ExecutionError(f"move {number} of {delta!r}: {err}") from err
    return state


# --------------------------------------------------------------------------- executor


def _failure(kind: IssueKind, message: str, state: object | None) -> ExecResult:
    return ExecResult(image=None, state=state, issue=FormatIssue(kind, None, message))


class Executor:
    """Renders v_t = Exec(a_t, v_{t-1}) for the five atomic actions.

    Paper Appendix A.
    """

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def execute(
        self, action: Any, image: Image.Image | None, state: object | None = None
    ) -> ExecResult:
        """Apply one action. Never raises.

        Args:
            action: a ``Zoom``, ``BBox``, ``Mark``, ``Line`` or ``Pred`` of
                :mod:`omni_r1.trajectory`.
            image: v_{t-1}, any size and mode (unused by PRED, may be None there).
            state: the task state PRED transitions act on; passed through by the others.

        Returns:
            :class:`ExecResult` with v_t (RGB, R x R) and the next state, or with
            ``image=None`` and the issue (``UNKNOWN_ACTION`` or ``BAD_ARGUMENT``).
        """
        kind = getattr(action, "kind", None)
        try:
            if kind == "PRED":
                return self._predict(action, state)
            if kind not in ("ZOOM", *DRAWERS):
                return _failure(IssueKind.UNKNOWN_ACTION, f"unknown action {action!r}", state)
            if image is None:
                raise ExecutionError(f"{kind} needs the previous image")
            if kind == "ZOOM":
                return ExecResult(zoom(image, action, self.cfg), state, None)
            canvas = to_canvas(image, self.cfg)
            return ExecResult(DRAWERS[kind](canvas, action, self.cfg), state, None)
        except (ValueError, TypeError, AttributeError, OSError) as err:
            return _failure(IssueKind.BAD_ARGUMENT, f"{kind}: {err}", state)

    def _predict(self, action: Any, state: object | None) -> ExecResult:
        transition = TRANSITIONS.get(action.transition)
        if transition is None:
            known = ", ".join(sorted(TRANSITIONS))
            message = f"PRED: unknown transition {action.transition!r} (known: {known})"
            return _failure(IssueKind.UNKNOWN_ACTION, message, state)
        if state is None:
            raise ExecutionError(f"transition {action.transition!r} needs a task state")
        next_state = transition(state, action.delta)
        return ExecResult(next_state.render(self.cfg), next_state, None)

    def execute_trajectory(
        self,
        traj_or_steps: Trajectory | Sequence[Step] | Sequence[Any],
        image: Image.Image | None,
        state: object | None = None,
    ) -> list[Image.Image]:
        """Chain v_t = Exec(a_t, v_{t-1}) over a trajectory, from v_0 = ``image``.

        Args:
            traj_or_steps: a :class:`Trajectory`, its steps, or bare actions. A step with
                an action is executed; a step with an image slot but no action keeps its
                own ``image`` (Zebra-CoT free-form images) and that becomes v_{t-1} of
                the next step; a step without an image changes nothing.
            image: v_0; when None and a Trajectory is given, its first input image.
            state: the initial task state for PRED steps.

        Returns:
            One image per image slot, in order.

        Raises:
            ExecutionError: naming the step number and the issue of the first step that
                cannot be executed (ground-truth data is expected to execute cleanly).
        """
        steps: Iterable[Any] = traj_or_steps
        if isinstance(traj_or_steps, Trajectory):
            steps = traj_or_steps.steps
            if image is None and traj_or_steps.input_images:
                image = traj_or_steps.input_images[0]
        images: list[Image.Image] = []
        for number, step in enumerate(steps, start=1):
            action = step.action if isinstance(step, Step) else step
            if action is None:
                if isinstance(step, Step) and step.has_image:
                    if step.image is None:
                        raise ExecutionError(f"step {number}: image slot without action or image")
                    image = step.image
                    images.append(image)
                continue
            result = self.execute(action, image, state)
            if result.issue is not None:
                raise ExecutionError(
                    f"step {number}: {result.issue.kind.value}: {result.issue.message}"
                )
            image, state = result.image, result.state
            images.append(image)
        return images
