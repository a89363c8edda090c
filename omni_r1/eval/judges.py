"""Omni-Bench judges, chosen by name: ``rule`` (offline verifier) and ``llm`` (paper Appendix F).

- ``rule`` — THE accuracy verifier of PeRPO (:func:`omni_r1.rewards.registry.accuracy_batch_grader`, Appendix B)
  used as the judge (STYLE point 5: one grader for reward and evaluation). The verdict is
  ``grade.score >= judge.rule_threshold``; with the default threshold 1.0 only a full match
  counts (partial credit for close text, which PeRPO rewards, is a wrong answer here).
  Deterministic, offline: the embedded default.
- ``llm`` — the paper's judge: an OpenAI-compatible chat endpoint (``judge.llm.base_url``,
  ``model``, API key read from the environment variable named by ``api_key_env``) is given
  only the ground truth and the extracted model answer, with the system and user prompts of
  Appendix F, Table 7, verbatim, and must reply exactly ``True`` or ``False``. Any other reply is a wrong answer and is counted
  as malformed. Transport errors, 429/5xx replies and timeouts are retried with exponential
  backoff; when retries run out the evaluation stops with :class:`JudgeError` rather than
  count an unjudged answer as wrong. Replies are cached on disk (sqlite, keyed by the gold
  text as sent, the answer and the judge model), so a re-run makes no request.

Where it differs from the paper: for a multiple-choice item the gold sent to the LLM judge
carries the lettered options, so "letter = ordinal = option text" can be decided from the
pair alone; an item without an extracted final answer is False without asking the judge.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_r1.config import JudgeConfig, LlmJudgeConfig, RewardConfig
from omni_r1.rewards.accuracy import GradeRequest, extract_final_answer
from omni_r1.rewards.registry import accuracy_batch_grader

TRUE_REPLY, FALSE_REPLY = "True", "False"

JUDGE_SYSTEM_PROMPT = """You are a strict QA judge.
Decide correctness by comparing ONLY the ground-truth answer and the model answer. The question may be multiple-choice or open-ended.
OUTPUT:
Return exactly one token with NO quotes/punctuation/spaces/code fences: True or False.
GENERAL RULES:
1) Judge factual/semantic equivalence; ignore phrasing, filler, or reasoning text. If the model’s final claim contradicts the ground truth or hedges without committing, return False.
2) Numbers: allow formatting differences (1,000 vs 1000), scientific notation, or rounding that preserves the stated value. If units are present, require the same value after conversion; missing/extra incompatible units => False.
3) Lists/sets: require the same items; order doesn’t matter. Missing or extra items => False.
4) Spans/names: accept common synonyms and aliases that uniquely indicate the same entity.
5) If ambiguous, empty, multiple conflicting answers, or cannot be judged, return False.
SPECIAL RULES FOR MULTIPLE-CHOICE (only when options are provided below):
A) Treat option LETTERS and their NUMERIC ORDINALS as equivalent (A=1, B=2, C=3, …), but ONLY within this question’s options.
B) Treat the CORRECT OPTION’S FULL TEXT as equivalent to its letter and numeric index.
Your final output must be only the single token: True or False."""

# {ground_truth} / {model_answer} stand for the paper's "{Ground Truth}" / "{Model Answer}" slots.
JUDGE_USER_TEMPLATE = """### Ground Truth
{ground_truth}
### Model Answer
{model_answer}
### Decision
Return only one of: True, False."""


@dataclass(frozen=True)
class JudgeItem:
    """One prediction to judge."""

    gold: str
    response: str  # the whole model response (image segments shown as <image>)
    choices: tuple[str, ...] = ()

    @property
    def answer(self) -> str | None:
        """The extracted final-answer span (after the last ``Final Answer:``)."""
        return extract_final_answer(self.response)


@dataclass(frozen=True)
class Verdict:
    """A judged prediction: correct or not, a score in [0, 1], and why."""

    correct: bool
    score: float
    reason: str
    malformed: bool = False  # llm judge only: the reply was not exactly True/False
    library_timeouts: int = 0  # rule judge only: math-verify timeouts met while grading


Judge = Callable[[Sequence[JudgeItem]], list[Verdict]]


class JudgeError(RuntimeError):
    """The judge could not give a verdict (endpoint unreachable after every retry)."""


# ---------------------------------------------------------------------------------------------
# rule: the accuracy verifier
# ---------------------------------------------------------------------------------------------


def rule_judge(reward: RewardConfig, threshold: float) -> Judge:
    """The Appendix B verifier as a judge: ``correct = score >= threshold``."""
    grade = accuracy_batch_grader(reward)

    def judge(items: Sequence[JudgeItem]) -> list[Verdict]:
        results = grade([GradeRequest(item.response, item.gold, item.choices) for item in items])
        return [
            Verdict(result.score >= threshold, result.score, result.reason, library_timeouts=result.library_timeouts)
            for result in results
        ]

    return judge


# ---------------------------------------------------------------------------------------------
# llm: an OpenAI-compatible chat endpoint
# ---------------------------------------------------------------------------------------------


def gold_for_judge(gold: str, choices: Sequence[str]) -> str:
    """The ground truth as the judge sees it: with the lettered options for multiple choice."""
    if not choices:
        return gold
    options = "; ".join(f"({chr(ord('A') + i)}) {choice}" for i, choice in enumerate(choices))
    return f"{gold} [options: {options}]"


def judge_messages(gold: str, answer: str) -> list[dict[str, str]]:
    """Chat messages of one judgement: the instructions, then the pair to compare.

    Paper Appendix F, Table 7 (verbatim).
    """
    pair = JUDGE_USER_TEMPLATE.format(ground_truth=gold, model_answer=answer)
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": pair},
    ]


def parse_reply(reply: str | None) -> bool | None:
    """``True``/``False`` (surrounding whitespace allowed); None for anything else."""
    text = (reply or "").strip()
    if text == TRUE_REPLY:
        return True
    if text == FALSE_REPLY:
        return False
    return None


class JudgeCache:
    """On-disk cache of judge replies: sqlite, one row per (gold, answer, model).

    Each write is one committed transaction, so a crash never leaves a half-written entry and
    parallel readers see whole rows only.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, gold TEXT, answer TEXT,"
                " model TEXT, reply TEXT, created REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    @staticmethod
    def key(gold: str, answer: str, model: str) -> str:
        return hashlib.sha256(json.dumps([gold, answer, model]).encode("utf-8")).hexdigest()

    def get(self, gold: str, answer: str, model: str) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT reply FROM replies WHERE key = ?", (self.key(gold, answer, model),)
            ).fetchone()
        return None if row is None else row[0]

    def put(self, gold: str, answer: str, model: str, reply: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (self.key(gold, answer, model), gold, answer, model, reply, time.time()),
            )


def make_client(settings: LlmJudgeConfig) -> Any:
    """An ``openai.OpenAI`` client for the endpoint; retries are done here, not by the client."""
    from openai import OpenAI

    api_key = os.environ.get(settings.api_key_env) or "not-set"
    return OpenAI(
        base_url=settings.base_url, api_key=api_key, timeout=settings.timeout_s, max_retries=0
    )


def _retryable(err: Exception) -> bool:
    import openai

    if isinstance(err, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return False


def ask_judge(client: Any, settings: LlmJudgeConfig, gold: str, answer: str) -> str:
    """One judgement with retries: the raw reply text.

    Raises:
        JudgeError: every attempt failed (the last error is chained), or a non-retryable
            error (e.g. 401, 404) occurred.
    """
    messages = judge_messages(gold, answer)
    for attempt in range(settings.max_retries + 1):
        try:
            completion = client.chat.completions.create(
                model=settings.model, messages=messages, temperature=0.0,
                max_tokens=settings.max_tokens,
            )  # fmt: skip
            return completion.choices[0].message.content or ""
        except Exception as err:
            if not _retryable(err) or attempt == settings.max_retries:
                raise JudgeError(
                    f"judge {settings.model} at {settings.base_url}: no verdict after "
                    f"{attempt + 1} attempt(s): {type(err).__name__}: {err}"
                ) from err
            time.sleep(settings.backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def llm_judge(settings: LlmJudgeConfig, client: Any | None = None) -> Judge:
    """The Appendix F judge over an OpenAI-compatible endpoint, cached on disk.

    Args:
        settings: ``judge.llm`` of params.yaml.
        client: an ``openai.OpenAI``-like client; built from ``settings`` when None.
    """
    cache = JudgeCache(settings.cache_path)
    client = client or make_client(settings)

    def judge(items: Sequence[JudgeItem]) -> list[Verdict]:
        pairs = [(gold_for_judge(i.gold, i.choices), i.answer) for i in items]
        replies: dict[tuple[str, str], str] = {}
        for gold, answer in pairs:
            if answer is not None:
                cached = cache.get(gold, answer, settings.model)
                if cached is not None:
                    replies[(gold, answer)] = cached
        missing = sorted({p for p in pairs if p[1] is not None and p not in replies})
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            fresh = list(pool.map(lambda p: ask_judge(client, settings, *p), missing))
        for pair, reply in zip(missing, fresh, strict=True):
            cache.put(pair[0], pair[1], settings.model, reply)
            replies[pair] = reply
        return [_llm_verdict(pair, replies) for pair in pairs]

    return judge


def _llm_verdict(pair: tuple[str, str | None], replies: dict[tuple[str, str], str]) -> Verdict:
    if pair[1] is None:
        return Verdict(False, 0.0, "no_final_answer")
    parsed = parse_reply(replies[pair])
    if parsed is None:
        return Verdict(False, 0.0, f"malformed_reply: {replies[pair][:80]!r}", malformed=True)
    return Verdict(parsed, float(parsed), f"llm_{str(parsed).lower()}")


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

JUDGES: dict[str, Callable[[JudgeConfig, RewardConfig], Judge]] = {
    "rule": lambda judge, reward: rule_judge(reward, judge.rule_threshold),
    "llm": lambda judge, reward: llm_judge(judge.llm),
}


def build_judge(judge: JudgeConfig, reward: RewardConfig) -> Judge:
    """The judge named by ``judge.name``.

    Rule judge: the Appendix B verifier; LLM judge: paper Appendix F.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    if judge.name not in JUDGES:
        raise KeyError(f"unknown judge {judge.name!r} (known: {', '.join(JUDGES)})")
    return JUDGES[judge.name](judge, reward)
