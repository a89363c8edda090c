"""Format reward R_fmt (paper §4.2, PeRPO): is the output a well-formed trajectory?

Two variants, chosen by name in params.yaml ``reward.format``:

- ``trajectory`` (paper): 1.0 iff :func:`omni_r1.trajectory.parse_trajectory` finds no
  format issue (numbered THOUGHT steps, valid actions with their images, one image per
  step at most) and the final answer is non-empty; else 0.0.
- ``official``: 1.0 iff the text contains both ``THOUGHT`` and ``Final Answer:``
  (``src/PeRPO/rewards.py`` of the public code). Looser: malformed actions still earn it.
"""

from __future__ import annotations

from typing import Any

from omni_r1.trajectory import FINAL_ANSWER, THOUGHT_PREFIX, parse_trajectory


def trajectory_format_reward(text: Any) -> float:
    """1.0 when the response parses as a trajectory without issues and has an answer.

    Paper §4.2 format reward; the syntax of Appendix A.
    """
    parsed = parse_trajectory(text)
    return 1.0 if parsed.ok and bool(parsed.final_answer) else 0.0


def official_format_reward(text: Any) -> float:
    """1.0 when ``THOUGHT`` and ``Final Answer:`` both occur in the response.

    Paper §4.2 format reward as the official code checks it.
    """
    if not isinstance(text, str):
        return 0.0
    return 1.0 if THOUGHT_PREFIX in text and FINAL_ANSWER in text else 0.0
