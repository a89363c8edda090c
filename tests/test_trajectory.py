from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from omni_r1.trajectory import (
    IMAGE_SLOT,
    BBox,
    IssueKind,
    Line,
    Mark,
    Pred,
    Step,
    Trajectory,
    Zoom,
    parse_trajectory,
    render_action,
    render_prompt,
    render_trajectory,
)

# ---------------------------------------------------------------- strategies

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)


def _valid(factory, **kwargs):
    try:
        return factory(**kwargs)
    except ValidationError:
        assume(False)


@st.composite
def actions(draw):
    kind = draw(st.sampled_from(["ZOOM", "BBOX", "MARK", "LINE", "PRED"]))
    if kind in ("ZOOM", "BBOX"):
        x, y = draw(unit), draw(unit)
        w = draw(st.floats(min_value=1e-6, max_value=1.0)) * (1.0 - x)
        h = draw(st.floats(min_value=1e-6, max_value=1.0)) * (1.0 - y)
        return _valid(Zoom if kind == "ZOOM" else BBox, x=x, y=y, w=w, h=h)
    if kind == "MARK":
        label = draw(st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,15}", fullmatch=True))
        return _valid(Mark, x=draw(unit), y=draw(unit), label=label)
    if kind == "LINE":
        return _valid(Line, x1=draw(unit), y1=draw(unit), x2=draw(unit), y2=draw(unit))
    transition = draw(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True))
    delta = draw(st.from_regex(r"[a-z0-9][a-z0-9 ,]{0,20}[a-z0-9]|[a-z0-9]", fullmatch=True))
    return _valid(Pred, transition=transition, delta=delta)


@st.composite
def steps(draw):
    action = draw(st.none() | actions())
    has_image = True if action is not None else draw(st.booleans())
    return Step(rationale=draw(words), action=action, has_image=has_image)


@st.composite
def trajectories(draw):
    return Trajectory(
        question=draw(words),
        choices=tuple(draw(st.lists(words, max_size=4))),
        steps=tuple(draw(st.lists(steps(), max_size=6))),
        # free text keeps no image slot (render neutralises it), so an answer must hold text besides slots
        final_answer=draw(words.filter(lambda s: s.replace(IMAGE_SLOT, " ").strip())),
    )


def _normal(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- properties


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(trajectories())
def test_render_parse_round_trip(traj: Trajectory) -> None:
    parsed = parse_trajectory(render_trajectory(traj))
    assert parsed.ok, parsed.issues
    assert len(parsed.steps) == len(traj.steps)
    for got, want in zip(parsed.steps, traj.steps, strict=True):
        assert got.action == want.action
        assert got.has_image == want.has_image
    # Free text is normalised to one line; markers in it are neutralised, never parsed.
    assert parsed.final_answer == render_trajectory(traj).split("Final Answer: ")[-1]
    assert parsed.image_count == sum(s.has_image for s in traj.steps)


def test_an_answer_of_image_slots_only_renders_empty() -> None:
    """Render neutralises image slots in free text; an answer of slots alone is left empty and flagged."""
    traj = Trajectory(question="0", choices=(), steps=(), final_answer=IMAGE_SLOT)
    parsed = parse_trajectory(render_trajectory(traj))
    assert [issue.kind for issue in parsed.issues] == [IssueKind.EMPTY_ANSWER] and parsed.final_answer == ""


@settings(max_examples=10_000, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    parsed = parse_trajectory(text)
    assert isinstance(parsed.issues, list)
    assert parsed.ok == (not parsed.issues)


FRAGMENTS = [
    "THOUGHT 1:", "THOUGHT 2:", "THOUGHT 7 :", "ACTION:", "ZOOM(", "BBOX(", "MARK(", "LINE(",
    "PRED(", "FOO(", ")", ",", "0.5", "1e9", "nan", "-inf", "0.", ".3", '"A"', "grid_move: up",
    IMAGE_SLOT, "Final Answer:", "\n", " ", "x",
]


@settings(max_examples=10_000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_fragment_soup_never_raises(parts: list[str]) -> None:
    parsed = parse_trajectory("".join(parts))
    for issue in parsed.issues:
        assert isinstance(issue.kind, IssueKind)


def test_non_text_never_raises() -> None:
    for value in (None, 3, b"bytes", ["THOUGHT 1:"]):
        assert parse_trajectory(value).kinds() == {IssueKind.MISSING_ANSWER}


# ---------------------------------------------------------------- one test per issue kind

GOOD = "THOUGHT 1: look.\nACTION: {action}\n<image>\nFinal Answer: 4"


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("SPIN(0.1, 0.2)", IssueKind.UNKNOWN_ACTION),
        ("ZOOM(0.1, 0.2, 0.3)", IssueKind.WRONG_ARITY),
        ("MARK(0.1)", IssueKind.WRONG_ARITY),
        ("PRED(up)", IssueKind.WRONG_ARITY),
        ("LINE(0.1, 0.2, abc, 0.4)", IssueKind.NON_NUMERIC),
        ("BBOX(0.1, 0.2, 0x3, 0.4)", IssueKind.NON_NUMERIC),
        ("ZOOM(nan, 0.2, 0.3, 0.3)", IssueKind.NON_FINITE),
        ("ZOOM(0.1, inf, 0.3, 0.3)", IssueKind.NON_FINITE),
        ("ZOOM(0.1, 0.2, 1e999, 0.3)", IssueKind.NON_FINITE),
        ("MARK(1.5, 0.2)", IssueKind.OUT_OF_RANGE),
        ("BBOX(-0.1, 0.2, 0.3, 0.3)", IssueKind.OUT_OF_RANGE),
        ("ZOOM(0.8, 0.2, 0.3, 0.3)", IssueKind.OUT_OF_RANGE),
        ("ZOOM(0.1, 0.2, 0, 0.3)", IssueKind.DEGENERATE),
        ("BBOX(0.1, 0.2, 0.3, 0.0)", IssueKind.DEGENERATE),
        ("LINE(0.1, 0.2, 0.1, 0.2)", IssueKind.DEGENERATE),
        ('MARK(0.1, 0.2, "a label that is far too long")', IssueKind.BAD_ARGUMENT),
        ("PRED(9bad: up)", IssueKind.BAD_ARGUMENT),
    ],
)
def test_action_issue_kinds(action: str, kind: IssueKind) -> None:
    parsed = parse_trajectory(GOOD.format(action=action))
    assert parsed.kinds() == {kind}, parsed.issues
    assert parsed.issues[0].step == 1
    assert parsed.steps[0].action is None
    assert parsed.final_answer == "4"


def test_valid_actions_parse() -> None:
    for action in ("ZOOM(0.1, 0.2, 0.3, 0.4)", 'MARK(0.5, 0.5, "B2")', "PRED(grid_move: up, left)"):
        parsed = parse_trajectory(GOOD.format(action=action))
        assert parsed.ok, parsed.issues
        assert render_action(parsed.steps[0].action) == action


def test_missing_answer() -> None:
    parsed = parse_trajectory("THOUGHT 1: thinking.\n<image>\n")
    assert parsed.kinds() == {IssueKind.MISSING_ANSWER}
    assert parsed.final_answer is None
    assert parsed.image_count == 1


def test_empty_answer() -> None:
    assert parse_trajectory("THOUGHT 1: x\nFinal Answer:   \n").kinds() == {IssueKind.EMPTY_ANSWER}


@pytest.mark.parametrize(
    "text",
    [
        "THOUGHT 1: x\nACTION: ZOOM(0.1, 0.1, 0.2, 0.2)\nFinal Answer: 1",  # action, no image
        "THOUGHT 1: x\n<image>\n<image>\nFinal Answer: 1",  # two images in one step
        "THOUGHT 1: x\n<image>\nACTION: ZOOM(0.1, 0.1, 0.2, 0.2)\nFinal Answer: 1",  # wrong order
        "THOUGHT 1: x\nFinal Answer: 1 <image>",  # image in the answer
    ],
)
def test_image_slot_mismatch(text: str) -> None:
    assert IssueKind.IMAGE_SLOT_MISMATCH in parse_trajectory(text).kinds()


@pytest.mark.parametrize(
    "text",
    [
        "preamble\nTHOUGHT 1: x\nFinal Answer: 1",
        "THOUGHT 2: x\nFinal Answer: 1",
        "ACTION: ZOOM(0.1, 0.1, 0.2, 0.2)\n<image>\nFinal Answer: 1",
        "THOUGHT 1: x\nACTION: ZOOM(0.1, 0.1, 0.2, 0.2)\nACTION: ZOOM(0.1, 0.1, 0.2, 0.2)\n<image>\nFinal Answer: 1",
    ],
)
def test_malformed_steps(text: str) -> None:
    assert IssueKind.MALFORMED_STEP in parse_trajectory(text).kinds()


def test_markers_inside_free_text_do_not_spoof() -> None:
    traj = Trajectory(
        question="q",
        steps=(Step(rationale="THOUGHT 9: ACTION: ZOOM(0,0,1,1) <image> Final Answer: no"),),
        final_answer="yes",
    )
    parsed = parse_trajectory(render_trajectory(traj))
    assert parsed.ok and parsed.final_answer == "yes"
    assert parsed.steps[0].action is None and not parsed.steps[0].has_image


def test_prompt_has_image_slots_and_lettered_choices() -> None:
    traj = Trajectory(question="Which?", choices=("red", "blue"), input_images=(object(),), final_answer="A")
    assert render_prompt(traj) == f"{IMAGE_SLOT}\nWhich?\nChoices:\n(A) red\n(B) blue"


def test_step_types_reject_bad_construction() -> None:
    with pytest.raises(ValidationError):
        Step(rationale="x", action=Zoom(x=0, y=0, w=0.5, h=0.5), has_image=False)
    with pytest.raises(ValidationError):
        Zoom(x=math.nan, y=0, w=0.5, h=0.5)
