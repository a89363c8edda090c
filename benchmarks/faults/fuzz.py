"""Fuzzing the parser, the grader and the reward with generated model outputs.

Every case is a response token row scored by the real PeRPO path
(:func:`omni_r1.training.rollout.score_responses`: the tokenizer's decode, ``parse_trajectory``,
the batch accuracy grader, the format reward, the perception score, the combination), and its
decoded text is also parsed by :func:`omni_r1.trajectory.parse_trajectory` on its own. Kinds:

- ``random_tokens``: uniform token ids over the whole vocabulary (text, BOI/EOI, image codes);
- ``adversarial_text``: trajectory fragments, huge and odd numbers, LaTeX, control and
  non-Latin characters, glued at random and encoded by the real tokenizer;
- ``malformed_actions``: action calls with missing, extra, non-numeric or out-of-range
  arguments and unbalanced brackets;
- ``unterminated_images``: BOI followed by some image codes and no EOI (or EOI without BOI).

Golds cycle through numbers, option letters with choices, short texts and formulas. A case
fails when anything raises or a score is not finite or outside [0, 1].
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from omni_r1.config import Config
from omni_r1.trajectory import parse_trajectory

BATCH = 64
FRAGMENTS = [
    "Step 1:", "Step 2:", "Step 99999999999:", "Final Answer:", "Final Answer: ", "THOUGHT", "<image>",
    "<ZOOM(0.1, 0.2, 0.5, 0.6)>", "<BBOX(0.0,0.0,1.0,1.0)>", "<MARK(0.5, 0.5)>", "<LINE(0,0,1,1)>",
    "<PRED(up, up, left)>", "\\boxed{", "}", "\\frac{1}{0}", "10^10^10^10", "9" * 400, "-0", "nan", "inf",
    "1e308", "1e-400", "(A)", "B)", "option C", "the third", "√2", "x^2+2x+1", "\\sqrt{-1}", "0/0", "2**9999",
    "999999999!", "\x00", "\u202e", "\ufffd", "🙂", "中文答案", "\t\n\r", "((((((((((", "]]]]", "{}" * 50,
    "Answer: 42", "42 cm", "Final Answer: Final Answer:", "<<<>>>", "\\left(", "\\right)", "True", "False",
]
ACTIONS = ["ZOOM", "BBOX", "MARK", "LINE", "PRED", "zoom", "Zoom", "CROP", ""]
ARGUMENTS = ["0.5", "-1", "2", "1e9", "nan", "inf", "", "abc", "0.1.2", "((", "up", "1/0", "0x10", "  "]
GOLDS: list[tuple[str, tuple[str, ...], str | None]] = [
    ("42", (), "numeric"), ("3.5", (), None), ("B", ("red", "green", "blue", "cyan"), "choice"),
    ("upper left", (), "text"), ("x^2 + 1", (), "symbolic"), ("\\frac{1}{2}", (), None), ("up, up, left", (), None),
]


@dataclass
class FuzzFigures:
    cases: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    exceptions: int = 0
    out_of_range: int = 0
    parse_exceptions: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)


def adversarial_text(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(1, 12)))


def malformed_action(rng: random.Random) -> str:
    args = ", ".join(rng.choice(ARGUMENTS) for _ in range(rng.randint(0, 6)))
    close = rng.choice([")>", ")", ">", "", "))>"])
    step = f"Step {rng.randint(0, 3)}: look <{rng.choice(ACTIONS)}({args}{close} <image>\n"
    return step * rng.randint(1, 3) + rng.choice(["Final Answer: 42", "Final Answer:", ""])


def case_rows(kind: str, rng: random.Random, tokenizer: Any, layout: Any, vocab: int) -> torch.Tensor:
    """One response row [N] of the given kind, ending with EOS."""
    if kind == "random_tokens":
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 96))]
    elif kind == "unterminated_images":
        text = tokenizer.encode(adversarial_text(rng), add_special_tokens=False)
        codes = [layout.image_token_start + rng.randrange(layout.num_codes) for _ in range(rng.randint(0, 40))]
        ids = text + ([layout.boi_id] if rng.random() < 0.8 else [layout.eoi_id]) + codes
    else:
        text = adversarial_text(rng) if kind == "adversarial_text" else malformed_action(rng)
        ids = tokenizer.encode(text, add_special_tokens=False)[:400]
    return torch.tensor([*ids, layout.eos_id], dtype=torch.long)


def in_range(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 1.0


def score_cases(
    rows: list[torch.Tensor], owners: list[Any], figures: FuzzFigures, score: Callable[..., list[Any]]
) -> None:
    """Score one batch; on an exception, score its cases one by one to count them exactly."""
    try:
        responses = score(rows, owners)
    except Exception as err:  # noqa: BLE001 - the figure counts exceptions
        for row, owner in zip(rows, owners, strict=True):
            try:
                responses = score([row], [owner])
                check_ranges(responses, figures)
            except Exception as one:  # noqa: BLE001
                figures.exceptions += 1
                if len(figures.examples) < 5:
                    figures.examples.append(f"{type(one).__name__}: {one} (batch: {type(err).__name__})")
        return
    check_ranges(responses, figures)


def check_ranges(responses: list[Any], figures: FuzzFigures) -> None:
    for response in responses:
        values = [response.reward, response.accuracy, response.format]
        if response.has_image:
            values.append(response.perception)
        if not all(in_range(v) for v in values):
            figures.out_of_range += 1
            if len(figures.examples) < 5:
                figures.examples.append(f"out of range: {values} for {response.text[:80]!r}")
        try:
            parse_trajectory(response.text)
        except Exception as err:  # noqa: BLE001
            figures.parse_exceptions += 1
            if len(figures.examples) < 5:
                figures.examples.append(f"parse_trajectory: {type(err).__name__}: {err}")


def run(cfg: Config, model_dir: Path, cases: int, seed: int, log: Callable[[str], None]) -> FuzzFigures:
    """Fuzz ``cases`` outputs of the tiny model in ``model_dir`` through the PeRPO reward path."""
    from omni_r1.model.loading import load_omni
    from omni_r1.training.rollout import PromptItem, reward_scorer, score_responses

    omni = load_omni(cfg, model_dir=model_dir)
    scorer = reward_scorer(cfg, omni.model, omni.layout)
    vocab = omni.model.config.vocab_size
    prompts = [
        PromptItem(f"fuzz-{i}", torch.tensor([omni.layout.bos_id]), gold, choices, kind, "", (), None)
        for i, (gold, choices, kind) in enumerate(GOLDS)
    ]
    kinds = ["random_tokens", "adversarial_text", "malformed_actions", "unterminated_images"]
    rng = random.Random(seed)
    figures = FuzzFigures(by_kind={kind: 0 for kind in kinds})

    def score(rows: list[torch.Tensor], owners: list[Any]) -> list[Any]:
        return score_responses(omni.tokenizer, omni.layout, rows, owners, [0] * len(rows), list(range(len(rows))), scorer)

    started = time.perf_counter()
    while figures.cases < cases:
        size = min(BATCH, cases - figures.cases)
        batch_kinds = [kinds[(figures.cases + i) % len(kinds)] for i in range(size)]
        rows = [case_rows(kind, rng, omni.tokenizer, omni.layout, vocab) for kind in batch_kinds]
        owners = [rng.choice(prompts) for _ in rows]
        score_cases(rows, owners, figures, score)
        for kind in batch_kinds:
            figures.by_kind[kind] += 1
        figures.cases += size
        if figures.cases % (BATCH * 200) == 0:
            log(f"  fuzz: {figures.cases}/{cases} cases, {figures.exceptions} exceptions")
    figures.seconds = time.perf_counter() - started
    return figures
