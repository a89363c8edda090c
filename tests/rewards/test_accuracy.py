"""Accuracy verifier (Appendix B): hand-checked cases per check, and a no-raise fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_r1.rewards.accuracy import (
    AccuracySettings,
    accuracy_reward,
    grade_response,
    normalize_answer,
    parse_number,
    similarity,
)
from omni_r1.rewards.registry import accuracy_grader

SETTINGS = AccuracySettings(
    partial_credit_threshold=0.77, symbolic_timeout_s=5, grader_time_limit_s=10, grader_memory_limit_mb=1024
)


def grade(answer: str, gold: str, choices=(), answer_type=None):
    return grade_response(f"THOUGHT 1: think.\nFinal Answer: {answer}", gold, SETTINGS, choices, answer_type)


@pytest.mark.parametrize(
    ("answer", "gold", "reason"),
    [
        ("50%", "0.5", "numeric"),  # 50/100 = 0.5
        ("50%", "50", "numeric"),  # percent in context: "50%" answers "what percent" = 50
        ("0.5", "50%", "numeric"),  # and the other way round
        ("1,234 cm", "1234", "numeric"),  # thousands separator and unit stripped
        ("$12", "12", "numeric"),
        ("-3", "−3", "numeric"),  # unicode minus
        ("x = 5", "5", "numeric"),  # right-hand side of a single equation
        ("The answer is \\boxed{7}.", "7", "numeric"),
    ],
)
def test_numeric_matches(answer: str, gold: str, reason: str) -> None:
    result = grade(answer, gold)
    assert (result.score, result.reason) == (1.0, reason)


def test_numeric_mismatch_gets_no_partial_credit() -> None:
    # "12" vs "13": difflib ratio 0.5, but numbers are graded exactly
    assert grade("12", "13").score == 0.0
    assert grade("51%", "0.5").score == 0.0  # 51/100 = 0.51 != 0.5 and 51 != 0.5


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("$\\frac{1}{2}$", "0.5"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("x+1", "1+x"),
        ("2\\pi", "\\pi \\cdot 2"),
    ],
)
def test_symbolic_equivalence(answer: str, gold: str) -> None:
    result = grade(answer, gold)
    assert result.score == 1.0 and result.reason == "symbolic"


def test_wrong_formula_scores_zero_not_partial() -> None:
    # "x^2+1" vs "x^2+2" is 0.8 similar as text, but it is a different formula
    result = grade("x^2+1", "x^2+2")
    assert (result.score, result.reason) == (0.0, "symbolic_mismatch")


@pytest.mark.parametrize(
    ("answer", "gold", "choices", "score"),
    [
        ("B", "B", (), 1.0),
        ("(B) red", "B", (), 1.0),
        ("b", "B", ("blue", "red"), 1.0),
        ("the second option", "B", ("blue", "red"), 1.0),  # ordinal 2 -> B
        ("red", "B", ("blue", "red"), 1.0),  # option text -> B
        ("B", "red", ("blue", "red"), 1.0),  # gold given as option text
        ("A", "B", ("blue", "red"), 0.0),
        ("the first one", "B", ("blue", "red"), 0.0),
        ("last", "C", ("x", "y", "z"), 1.0),
    ],
)
def test_multiple_choice(answer: str, gold: str, choices: tuple[str, ...], score: float) -> None:
    assert grade(answer, gold, choices).score == score


def test_partial_credit_only_above_threshold() -> None:
    # "redd" vs "red": ratio = 2*3/(4+3) = 6/7 = 0.857 > 0.77 -> credit 0.857
    close = grade("redd", "red")
    assert close.reason == "text_partial"
    assert close.score == pytest.approx(6 / 7)
    # "blue" vs "red": ratio = 2*1/(4+3) = 2/7 = 0.286 <= 0.77 -> 0
    far = grade("blue", "red")
    assert (far.score, far.reason) == (0.0, "text_mismatch")
    assert similarity("blue", "red") == pytest.approx(2 / 7)


def test_text_exact_set_and_numbers_guard() -> None:
    assert grade("The Eiffel Tower.", "eiffel tower").reason == "text_exact"
    assert grade("blue, red", "red and blue").reason == "text_set"
    # "5 apples" vs "9 apples" differ only in the number: no similarity credit
    assert grade("five apples 5", "five apples 9").score == 0.0


def test_strict_variant_has_no_partial_credit(cfg) -> None:
    strict = accuracy_grader(cfg.reward.model_copy(update={"accuracy": "strict"}))
    default = accuracy_grader(cfg.reward)
    text = "THOUGHT 1: x.\nFinal Answer: redd"
    assert default(text, "red").score == pytest.approx(6 / 7)
    assert strict(text, "red").score == 0.0


def test_missing_or_empty_answer_scores_zero() -> None:
    assert grade_response("no marker here", "5", SETTINGS).reason == "no_final_answer"
    assert accuracy_reward("Final Answer:   ", "5", settings=SETTINGS) == 0.0
    assert accuracy_reward(None, "5", settings=SETTINGS) == 0.0


def test_answer_type_restricts_checks() -> None:
    # as text, "1/2" and "0.5" differ; as a number they are equal
    assert grade("1/2", "0.5", answer_type="numeric").score == 1.0
    assert grade("1/2", "0.5", answer_type="text").score == 0.0


def test_normalisation_and_number_parsing() -> None:
    assert normalize_answer("**The answer is $\\boxed{\\text{cat}}$.**") == "cat"
    assert parse_number("12.5%").value == 12.5 and parse_number("12.5%").percent
    assert parse_number("3/4").value == 0.75
    assert parse_number("three") is None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.text(max_size=40),
    gold=st.text(max_size=20),
    choices=st.lists(st.text(max_size=8), max_size=4),
    answer_type=st.sampled_from([None, "choice", "numeric", "symbolic", "text"]),
    with_marker=st.booleans(),
)
def test_never_raises_and_stays_in_range(answer, gold, choices, answer_type, with_marker) -> None:
    text = f"Final Answer: {answer}" if with_marker else answer
    score = accuracy_reward(text, gold, tuple(choices), answer_type, settings=SETTINGS)
    assert 0.0 <= score <= 1.0


def test_fraction_beyond_float_range_is_not_a_grader_error() -> None:
    huge = "9" * 400 + "/3"  # int / int overflows a float
    assert parse_number(huge) is None
    result = grade(huge, "5")
    assert result.score == 0.0 and not result.reason.startswith("grader_error")
