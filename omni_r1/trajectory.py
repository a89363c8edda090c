"""The unified interleaved trajectory (paper, Appendix A) and its text form.

A trajectory is a question (+ input images) followed by T steps, each a text rationale
r_t, an optional atomic action a_t and an optional post-action image v_t, then a final
answer y. This module holds the types, writes the training text and reads model output
back.

Text form (assistant part) written by :func:`render_trajectory`::

    THOUGHT 1: The flag is small; look at the upper left.
    ACTION: ZOOM(0.1, 0.05, 0.3, 0.3)
    <image>
    THOUGHT 2: It is red.
    Final Answer: red

- ``THOUGHT k:`` opens step k (k = 1, 2, ... in order), as in Zebra-CoT traces.
- ``ACTION: NAME(arg, ...)`` is optional, on its own line after the rationale:
  ``ZOOM(x, y, w, h)``, ``BBOX(x, y, w, h)``, ``MARK(x, y)`` or ``MARK(x, y, "label")``,
  ``LINE(x1, y1, x2, y2)``, ``PRED(transition: delta)``. Coordinates are normalised to
  [0, 1] with (0, 0) at the top left of the previous image.
- ``<image>`` marks the step's image slot. The model packer puts BOI, the image's
  codebook tokens and EOI there; decoding model output puts the marker back.
- A step with an action has exactly one image (v_t = Exec(a_t, v_{t-1})); a step without
  one may have one image (Zebra-CoT's free-form images) or none (text-only CoT).
- ``Final Answer:`` closes the trace; its text runs to the end.

:func:`parse_trajectory` never raises: it returns what it could read and a list of
:class:`FormatIssue`, one per problem, which the format reward and the evaluator use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

IMAGE_SLOT = "<image>"
THOUGHT_PREFIX = "THOUGHT"
ACTION_PREFIX = "ACTION:"
FINAL_ANSWER = "Final Answer:"

Coordinate = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def arguments(self) -> list[str]:
        """The serialised arguments, in order."""
        raise NotImplementedError


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float."""
    return repr(float(value))


class _Box(_Action):
    x: Coordinate
    y: Coordinate
    w: Coordinate
    h: Coordinate

    @model_validator(mode="after")
    def _inside(self) -> _Box:
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"degenerate box: w={self.w}, h={self.h} must be > 0")
        if self.x + self.w > 1.0 + 1e-9 or self.y + self.h > 1.0 + 1e-9:
            raise ValueError(
                f"box leaves [0,1]: x+w={self.x + self.w:.4g}, y+h={self.y + self.h:.4g}"
            )
        return self

    def arguments(self) -> list[str]:
        return [_fmt(v) for v in (self.x, self.y, self.w, self.h)]


class Zoom(_Box):
    """Crop the box and resize it to the model resolution."""

    kind: Literal["ZOOM"] = "ZOOM"


class BBox(_Box):
    """Overlay the outline of a box."""

    kind: Literal["BBOX"] = "BBOX"


class Mark(_Action):
    """Highlight an instance at a point, with an optional short label."""

    kind: Literal["MARK"] = "MARK"
    x: Coordinate
    y: Coordinate
    label: str | None = None

    @model_validator(mode="after")
    def _label(self) -> Mark:
        if self.label is not None and not _LABEL_RE.fullmatch(self.label):
            raise ValueError(
                f"label {self.label!r} must be 1-{MAX_LABEL_CHARS} characters of [A-Za-z0-9_ .-]"
            )
        return self

    def arguments(self) -> list[str]:
        args = [_fmt(self.x), _fmt(self.y)]
        return args + [f'"{self.label}"'] if self.label is not None else args


class Line(_Action):
    """Draw a segment between two points."""

    kind: Literal["LINE"] = "LINE"
    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate

    @model_validator(mode="after")
    def _length(self) -> Line:
        if self.x1 == self.x2 and self.y1 == self.y2:
            raise ValueError("degenerate line: both end points are the same")
        return self

    def arguments(self) -> list[str]:
        return [_fmt(v) for v in (self.x1, self.y1, self.x2, self.y2)]


class Pred(_Action):
    """One task-dependent state transition, e.g. ``PRED(grid_move: up)``."""

    kind: Literal["PRED"] = "PRED"
    transition: str
    delta: str

    @model_validator(mode="after")
    def _names(self) -> Pred:
        if not _NAME_RE.fullmatch(self.transition):
            raise ValueError(f"transition {self.transition!r} must be an identifier")
        if not _DELTA_RE.fullmatch(self.delta):
            raise ValueError(f"delta {self.delta!r} must be 1-64 characters without ( ) or newline")
        return self

    def arguments(self) -> list[str]:
        return [f"{self.transition}: {self.delta}"]


Action = Annotated[Zoom | BBox | Mark | Line | Pred, Field(discriminator="kind")]
ACTION_TYPES: dict[str, type[_Action]] = {
    "ZOOM": Zoom,
    "BBOX": BBox,
    "MARK": Mark,
    "LINE": Line,
    "PRED": Pred,
}

# Part of the trajectory grammar, like the 64-character PRED delta: stored data, the parser
# and the format reward must agree on it, so it is a constant of the format, not a parameter.
MAX_LABEL_CHARS = 16  # longest MARK label
_LABEL_RE = re.compile(rf"[A-Za-z0-9_.\- ]{{1,{MAX_LABEL_CHARS}}}")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_DELTA_RE = re.compile(r"[^()\n\r]{1,64}")


def render_action(action: _Action) -> str:
    return f"{action.kind}({', '.join(action.arguments())})"


class Step(BaseModel):
    """One reasoning step: rationale, optional action, optional image.

    ``image`` carries the pixels (a PIL image) or cached codebook codes when known;
    ``has_image`` says whether the step has an image slot at all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    rationale: str
    action: Action | None = None
    has_image: bool = False
    image: Any = None

    @model_validator(mode="after")
    def _slot(self) -> Step:
        if self.action is not None and not self.has_image:
            raise ValueError("a step with an action must have an image slot")
        if self.image is not None and not self.has_image:
            raise ValueError("a step with an image must have has_image=True")
        return self


class Trajectory(BaseModel):
    """Question (+ choices, input images), steps and final answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    question: str
    choices: tuple[str, ...] = ()
    input_images: tuple[Any, ...] = ()
    steps: tuple[Step, ...] = ()
    final_answer: str


class IssueKind(StrEnum):
    UNKNOWN_ACTION = "unknown_action"
    WRONG_ARITY = "wrong_arity"
    NON_NUMERIC = "non_numeric"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    DEGENERATE = "degenerate"
    BAD_ARGUMENT = "bad_argument"
    MALFORMED_STEP = "malformed_step"
    MISSING_ANSWER = "missing_answer"
    EMPTY_ANSWER = "empty_answer"
    IMAGE_SLOT_MISMATCH = "image_slot_mismatch"


@dataclass(frozen=True)
class FormatIssue:
    kind: IssueKind
    step: int | None  # 1-based step number, None for whole-trace problems
    message: str


@dataclass
class ParsedTrajectory:
    steps: list[Step] = field(default_factory=list)
    final_answer: str | None = None
    issues: list[FormatIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def image_count(self) -> int:
        return sum(step.has_image for step in self.steps)

    def kinds(self) -> set[IssueKind]:
        return {issue.kind for issue in self.issues}


def render_prompt(traj: Trajectory) -> str:
    """The user turn: input image slots, question and lettered choices."""
    parts = [IMAGE_SLOT] * len(traj.input_images) + [traj.question.strip()]
    if traj.choices:
        parts.append("Choices:")
        parts += [f"({chr(ord('A') + i)}) {choice}" for i, choice in enumerate(traj.choices)]
    return "\n".join(parts)


def render_trajectory(traj: Trajectory) -> str:
    """The assistant turn: numbered THOUGHT steps, actions, image slots, final answer."""
    lines: list[str] = []
    for number, step in enumerate(traj.steps, start=1):
        lines.append(f"{THOUGHT_PREFIX} {number}: {_one_line(step.rationale)}")
        if step.action is not None:
            lines.append(f"{ACTION_PREFIX} {render_action(step.action)}")
        if step.has_image:
            lines.append(IMAGE_SLOT)
    lines.append(f"{FINAL_ANSWER} {_one_line(traj.final_answer)}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """Keep free text from breaking the line structure or spoofing a marker."""
    text = " ".join(text.replace(IMAGE_SLOT, " ").split())
    return _MARKER_RE.sub(lambda m: m.group(0).lower(), text)


_MARKER_RE = re.compile(r"THOUGHT|ACTION:|Final Answer:")
_STEP_RE = re.compile(r"^THOUGHT\s+(\d+)\s*:", re.MULTILINE)
_ACTION_RE = re.compile(r"ACTION:\s*(?P<name>[A-Za-z_]\w*)\s*\((?P<args>[^()\n]*)\)")
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_trajectory(text: Any) -> ParsedTrajectory:
    """Read a rendered trace (or model output) back. Never raises.

    Args:
        text: the assistant text, with image segments shown as ``<image>``.

    Returns:
        A :class:`ParsedTrajectory` with the steps and answer that could be read and one
        :class:`FormatIssue` per problem found.
    """
    result = ParsedTrajectory()
    if not isinstance(text, str):
        result.issues.append(FormatIssue(IssueKind.MISSING_ANSWER, None, "output is not text"))
        return result
    body, answer = _split_answer(text, result)
    result.final_answer = answer
    matches = list(_STEP_RE.finditer(body))
    preamble = body[: matches[0].start()] if matches else body
    if matches and (preamble.strip() or IMAGE_SLOT in preamble):
        result.issues.append(
            FormatIssue(IssueKind.MALFORMED_STEP, None, "text before THOUGHT 1")
        )
    if not matches and (ACTION_PREFIX in body or IMAGE_SLOT in body):
        result.issues.append(
            FormatIssue(IssueKind.MALFORMED_STEP, None, "action or image outside any THOUGHT step")
        )
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(body)
        number = index + 1
        if match.group(1) != str(number):
            result.issues.append(
                FormatIssue(
                    IssueKind.MALFORMED_STEP, number, f"step labelled {match.group(1)!r}, expected {number}"
                )
            )
        result.steps.append(_parse_step(body[match.end() : end], number, result.issues))
    return result


def _split_answer(text: str, result: ParsedTrajectory) -> tuple[str, str | None]:
    position = text.rfind(FINAL_ANSWER)
    if position < 0:
        result.issues.append(FormatIssue(IssueKind.MISSING_ANSWER, None, "no 'Final Answer:'"))
        return text, None
    answer = text[position + len(FINAL_ANSWER) :]
    if IMAGE_SLOT in answer:
        result.issues.append(
            FormatIssue(IssueKind.IMAGE_SLOT_MISMATCH, None, "image inside the final answer")
        )
        answer = answer.replace(IMAGE_SLOT, " ")
    answer = " ".join(answer.split())
    if not answer:
        result.issues.append(FormatIssue(IssueKind.EMPTY_ANSWER, None, "final answer is empty"))
    return text[:position], answer


def _parse_step(chunk: str, number: int, issues: list[FormatIssue]) -> Step:
    images = chunk.count(IMAGE_SLOT)
    action_matches = list(_ACTION_RE.finditer(chunk))
    rationale = _ACTION_RE.sub(" ", chunk).replace(IMAGE_SLOT, " ")
    if ACTION_PREFIX in rationale:
        issues.append(FormatIssue(IssueKind.BAD_ARGUMENT, number, "unreadable ACTION line"))
        rationale = rationale.replace(ACTION_PREFIX, " ")
    rationale = " ".join(rationale.split())
    if len(action_matches) > 1:
        issues.append(FormatIssue(IssueKind.MALFORMED_STEP, number, "more than one action"))
    action = _parse_action(action_matches[0], number, issues) if action_matches else None
    if images > 1:
        issues.append(
            FormatIssue(IssueKind.IMAGE_SLOT_MISMATCH, number, f"{images} images in one step")
        )
    if action_matches and images == 0:
        issues.append(
            FormatIssue(IssueKind.IMAGE_SLOT_MISMATCH, number, "action without its image")
        )
        action = None  # v_t = Exec(a_t, v_{t-1}) has no image: the action cannot stand
    if action_matches and images and chunk.find(IMAGE_SLOT) < action_matches[0].start():
        issues.append(
            FormatIssue(IssueKind.IMAGE_SLOT_MISMATCH, number, "image before its action")
        )
    return Step(rationale=rationale, action=action, has_image=images > 0)


_ARITY = {"ZOOM": (4,), "BBOX": (4,), "LINE": (4,), "MARK": (2, 3), "PRED": (1,)}
_FIELDS = {
    "ZOOM": ("x", "y", "w", "h"),
    "BBOX": ("x", "y", "w", "h"),
    "LINE": ("x1", "y1", "x2", "y2"),
    "MARK": ("x", "y"),
}


def _parse_action(match: re.Match[str], number: int, issues: list[FormatIssue]) -> Any:
    name, raw = match.group("name"), match.group("args").strip()

    def fail(kind: IssueKind, message: str) -> None:
        issues.append(FormatIssue(kind, number, f"{name}: {message}"))

    if name not in ACTION_TYPES:
        return fail(IssueKind.UNKNOWN_ACTION, f"unknown action (known: {', '.join(ACTION_TYPES)})")
    if name == "PRED":
        return _parse_pred(raw, fail)
    args = [part.strip() for part in raw.split(",")] if raw else []
    if len(args) not in _ARITY[name]:
        return fail(IssueKind.WRONG_ARITY, f"takes {' or '.join(map(str, _ARITY[name]))} arguments, got {len(args)}")
    label = None
    if name == "MARK" and len(args) == 3:
        label = args.pop().strip('"')
    values: dict[str, Any] = {}
    for key, arg in zip(_FIELDS[name], args, strict=True):
        value = _number(arg)
        if value is None:
            return fail(IssueKind.NON_NUMERIC, f"{key}={arg!r} is not a number")
        if not math.isfinite(value):
            return fail(IssueKind.NON_FINITE, f"{key}={arg!r} is not finite")
        if not 0.0 <= value <= 1.0:
            return fail(IssueKind.OUT_OF_RANGE, f"{key}={value:g} outside [0, 1]")
        values[key] = value
    if label is not None:
        values["label"] = label
    return _build(name, values, fail)


def _parse_pred(raw: str, fail: Any) -> Any:
    transition, sep, delta = raw.partition(":")
    if not sep or not transition.strip() or not delta.strip():
        return fail(IssueKind.WRONG_ARITY, "expects 'transition: delta'")
    return _build("PRED", {"transition": transition.strip(), "delta": delta.strip()}, fail)


def _number(text: str) -> float | None:
    lowered = text.lower()
    if lowered in {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "-infinity"}:
        return float(lowered)
    if not _NUMBER_RE.fullmatch(text):
        return None
    return float(text)


def _build(name: str, values: dict[str, Any], fail: Any) -> Any:
    try:
        return ACTION_TYPES[name](**values)
    except ValidationError as err:
        message = "; ".join(item["msg"] for item in err.errors())
        kind = IssueKind.BAD_ARGUMENT
        if "degenerate" in message:
            kind = IssueKind.DEGENERATE
        elif "leaves [0,1]" in message:
            kind = IssueKind.OUT_OF_RANGE
        return fail(kind, message)
