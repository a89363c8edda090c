"""Every place that hands model text to a library stays bounded on hostile 10k-character outputs.

Format parsing (trajectory reader, format rewards), the grader's text paths (normalisation,
number, choice and text checks), judge prompt building and gallery rendering (HTML escaping)
run in a child process under a memory limit (``RLIMIT_AS``) and a wall-clock guard, so a
regex with catastrophic backtracking or a runaway allocation fails the test instead of
hanging or exhausting the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEMORY_BYTES = 1 << 30
GUARD_S = 300  # every call together takes well under a second; a backtracking regex takes hours

CHILD = r"""
import json, random
from omni_r1.eval.judges import JudgeItem, gold_for_judge, judge_messages, parse_reply
from omni_r1.eval.trajectories import render_checkpoint_gallery
from omni_r1.rewards.accuracy import AccuracySettings, grade_response, normalize_answer, parse_number
from omni_r1.rewards.format import official_format_reward, trajectory_format_reward
from omni_r1.trajectory import parse_trajectory

N = 10_000
rnd = random.Random(0)
HOSTILE = {
    "letters": "a" * N, "digits": "1" * N, "parens": "(" * N, "braces": "{" * (N // 2) + "}" * (N // 2),
    "boxed": "\\boxed{" * (N // 7), "tower": "9^" * (N // 2) + "9", "thoughts": "THOUGHT " * (N // 8),
    "action": "THOUGHT 1: x\nACTION: ZOOM(" + "1," * (N // 2), "commas": "1," * (N // 2),
    "unit": "5 " + "a" * (N - 3) + "!", "units": "5 " + "a^2 " * (N // 4 - 1) + "!",
    "images": "<image>" * (N // 7), "phrases": "the answer is " * (N // 14), "dollars": "$" * N,
    "emphasis": "**" * (N // 2), "equations": "x=" * (N // 2), "exponents": "1e" * (N // 2),
    "percents": "5%" * (N // 2), "label": "(A) " + "x" * N, "ordinals": "the first " * (N // 10),
    "lists": "a and " * (N // 6), "signs": "- " * (N // 2) + "5", "brackets": "[" * N + "A",
    "fractions": "\\frac{" * 1000 + "1" + "}{2}" * 1000,
    "steps": "".join(f"THOUGHT {i}: x\nACTION: ZOOM(0,0,1,1)\n<image>\n" for i in range(1, 250)),
    "random": "".join(rnd.choice("(){}[]^*!0123456789+-/\\x $,.%aA:=<>&") for _ in range(N)),
    "unicode": "".join(chr(rnd.randrange(0x20, 0x2FFF)) for _ in range(N)),
}
settings = AccuracySettings(0.77, 1, 2.0, 512)
results = {}
for name, text in HOSTILE.items():
    answer = "Final Answer: " + text
    trace = text + "\nFinal Answer: 5"
    row = {"question": text, "response": trace, "prediction": text, "gold": text, "verdict": False,
           "slice": "natural", "record_id": name, "image_codes": []}
    page = render_checkpoint_gallery([row], [[]], None, 1, title=text)
    results[name] = {
        "steps": len(parse_trajectory(trace).steps),
        "formats": [trajectory_format_reward(t) for t in (answer, trace)] + [official_format_reward(trace)],
        "scores": [
            grade_response(answer, "5", settings).score,
            grade_response(answer, "B", settings, ("red", text[:2000], "x")).score,
            grade_response(answer, text[::-1], settings).score,
        ],
        "normalized": len(normalize_answer(text)),
        "number": parse_number(text[:2000]) is not None,
        "prompt_has_answer": text in judge_messages(gold_for_judge(text, [text]), text)[1]["content"],
        "reply": parse_reply(text),
        "judge_answer": JudgeItem(gold=text, response=answer, choices=()).answer is not None,
        "raw_markup_in_page": "<image>" in page or "<(" in page,
    }
print(json.dumps(results))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def test_hostile_outputs_stay_bounded_everywhere() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
        timeout=GUARD_S, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert len(results) == 27
    for name, result in results.items():
        assert all(score in (0.0, 1.0) for score in result["formats"]), name
        assert all(0.0 <= score <= 1.0 for score in result["scores"]), name
        assert result["prompt_has_answer"], name  # the judge sees the answer as given
        assert result["reply"] is None, name  # only an exact True/False is a verdict
        assert result["judge_answer"] is (name != "images"), name  # image slots are not an answer
        assert not result["raw_markup_in_page"], name  # model text is escaped in the gallery
    assert results["steps"]["steps"] == 249  # a long well-formed trace is read in full
    assert results["steps"]["formats"][1:] == [1.0, 1.0]
