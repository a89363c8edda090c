"""Format reward variants."""

from __future__ import annotations

from omni_r1.rewards.format import official_format_reward, trajectory_format_reward
from omni_r1.rewards.registry import FORMAT_VARIANTS

GOOD = "THOUGHT 1: zoom in.\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n<image>\nFinal Answer: red"
BAD_ACTION = "THOUGHT 1: zoom in.\nACTION: ZOOM(0.1, 0.1, 2.0, 0.5)\n<image>\nFinal Answer: red"


def test_trajectory_variant_requires_clean_parse_and_answer() -> None:
    assert trajectory_format_reward(GOOD) == 1.0
    assert trajectory_format_reward(BAD_ACTION) == 0.0  # box leaves [0, 1]
    assert trajectory_format_reward("THOUGHT 1: x\nFinal Answer:  ") == 0.0  # empty answer
    assert trajectory_format_reward("THOUGHT 1: x") == 0.0  # no answer
    assert trajectory_format_reward(None) == 0.0


def test_official_variant_checks_markers_only() -> None:
    assert official_format_reward(BAD_ACTION) == 1.0  # looser: markers are present
    assert official_format_reward("Final Answer: red") == 0.0  # no THOUGHT
    assert official_format_reward(42) == 0.0


def test_variants_by_name() -> None:
    assert FORMAT_VARIANTS["trajectory"] is trajectory_format_reward
    assert FORMAT_VARIANTS["official"] is official_format_reward
