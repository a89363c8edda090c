"""Accuracy verifier (paper Appendix B): one grader for the PeRPO reward and the offline judge.

The same function scores a rollout during PeRPO and judges a prediction during evaluation
(STYLE point 5), so a reward improvement is an evaluation improvement and nothing else.

Pipeline, in the order of Appendix B:

1. **Extract** the span after the last ``Final Answer:`` (through
   :func:`omni_r1.trajectory.parse_trajectory`, the same reader the format reward uses).
2. **Normalise**: whitespace, template tags, markdown emphasis, LaTeX wrappers
   (``\\boxed{}``, ``\\text{}``, ``$...$``, ...), "the answer is" phrases, trailing punctuation.
3. **Ordered checks**, the first one that applies decides:

   - *choice*: multiple-choice letter (``B``, ``(B)``, ``B. red``), ordinal ("the second
     option") or option text, against a gold letter or gold option text. It runs first when
     the question has choices or the gold is a bare letter, because a letter is neither a
     number nor a formula (Appendix B lists these "domain patterns" last; the checks are
     disjoint in practice, so only the order of evaluation differs).
   - *numeric*: numbers with thousands separators, currency and trailing units stripped;
     percentages are context-aware (gold ``0.5`` or ``50`` both accept ``50%``).
   - *symbolic*: equivalence through ``math-verify`` (sympy), run in a worker process under
     hard time and memory limits (:mod:`omni_r1.rewards.sandbox`), after a screen that turns
     away expressions whose value is astronomically large (towers of powers, factorials of
     huge numbers). A limit hit, or a screened-out expression, scores 0 with the reason
     ``grader_limit``. A formula that parses on both sides and differs scores 0: no partial
     credit for a wrong formula.
   - *text*: exact match after case/article folding, order-free match of comma lists, and
     partial credit equal to the ``difflib`` similarity ratio only when it is above the
     closeness threshold (official code: ratio > 0.77 earns the ratio). Texts whose
     numbers differ get no partial credit ("5 apples" is not "9 apples").

Where this differs from the official grader (``src/PeRPO/rewards.py``): symbolic equivalence
uses ``math-verify`` instead of ``mathruler``; chemistry-name heuristics are not carried
over; answers are normalised for LaTeX wrappers before the numeric check.

Nothing here raises on model output: a malformed answer is a zero score with a reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any, Literal

from omni_r1.rewards.sandbox import GraderLimits, SymbolicOutcome, symbolic_worker
from omni_r1.trajectory import parse_trajectory

AnswerType = Literal["choice", "numeric", "symbolic", "text"]
MAX_ANSWER_CHARS = 2000  # longer "answers" are truncated before grading
MAX_SYMBOLIC_CHARS = 300  # sympy is not handed longer expressions
MAX_SIMILARITY_CHARS = 300  # difflib is quadratic; compare at most this many characters


@dataclass(frozen=True)
class AccuracySettings:
    """Knobs of the verifier (values come from params.yaml ``reward``)."""

    partial_credit_threshold: float  # text similarity must exceed this to earn credit
    symbolic_timeout_s: int  # math-verify's own parse/verify timeout, inside the worker
    grader_time_limit_s: float  # hard wall-clock limit of one symbolic comparison
    grader_memory_limit_mb: int  # hard address-space limit of the symbolic worker

    @property
    def limits(self) -> GraderLimits:
        return GraderLimits(self.grader_time_limit_s, self.grader_memory_limit_mb)


@dataclass(frozen=True)
class AccuracyResult:
    """A graded answer: the score in [0, 1], which check decided, and what was compared."""

    score: float
    reason: str
    prediction: str
    gold: str
    library_timeouts: int = 0  # math-verify "Timeout during ..." lines while grading this answer


LIMIT_REASON = "grader_limit"  # a symbolic check hit its time or memory limit (score 0)


# ---------------------------------------------------------------------------------------------
# Extraction and normalisation
# ---------------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"<reserved\d+>|</?answer>|</s>")
_EMPHASIS_RE = re.compile(r"(\*\*|__|`)")
_ANSWER_PHRASE_RE = re.compile(
    r"^\s*(?:so\s*,?\s*|therefore\s*,?\s*|thus\s*,?\s*)?"
    r"(?:the\s+(?:final\s+|correct\s+)?answer\s+is|final\s+answer\s*:|answer\s*:|answer\s+is)"
    r"\s*[:\-]?\s*",
    re.IGNORECASE,
)
_WRAPPER_COMMANDS = ("boxed", "fbox", "text", "textbf", "mathrm", "mathbf", "textit", "operatorname")
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_TRAILING_PUNCT_RE = re.compile(r"[\s.,;:!?。]+$")


def extract_final_answer(text: Any) -> str | None:
    """The span after the last ``Final Answer:``, or None when there is none or it is empty.

    Paper Appendix B.
    """
    answer = parse_trajectory(text).final_answer
    return answer if answer else None


def _unwrap_command(text: str, command: str) -> str:
    """Replace every ``\\command{body}`` by ``body`` (braces balanced, nesting allowed)."""
    opener = f"\\{command}{{"
    for _ in range(20):  # a bounded number of wrappers; never loops forever
        start = text.find(opener)
        if start < 0:
            return text
        depth, index = 1, start + len(opener)
        while index < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        if depth:  # unbalanced: drop the opener only
            return text[:start] + text[start + len(opener) :]
        text = text[:start] + text[start + len(opener) : index - 1] + text[index:]
    return text


def _strip_math_delimiters(text: str) -> str:
    for left, right in _MATH_DELIMITERS:
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            return text[len(left) : -len(right)].strip()
    return text


def normalize_answer(text: str) -> str:
    """Canonical answer text: wrappers, phrases, emphasis and trailing punctuation removed.

    Paper Appendix B.

    Case is kept (the choice check needs ``A`` vs ``a``); the text check folds it.
    """
    text = _TAG_RE.sub(" ", text[:MAX_ANSWER_CHARS])
    text = _EMPHASIS_RE.sub("", text)
    text = " ".join(text.split())
    for _ in range(3):  # phrases and wrappers can nest: "The answer is $\boxed{5}$."
        text = _ANSWER_PHRASE_RE.sub("", text)
        text = _TRAILING_PUNCT_RE.sub("", text)
        text = _strip_math_delimiters(text.strip())
        for command in _WRAPPER_COMMANDS:
            text = _unwrap_command(text, command)
        text = text.strip().strip("\"'“”‘’").strip()
    return text


# ---------------------------------------------------------------------------------------------
# Numeric check
# ---------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(
    r"^(?P<sign>[-+−]?)\s*[$€£¥₹]?\s*(?P<num>\d+(?:\.\d*)?|\.\d+)(?:[eE](?P<exp>[-+]?\d{1,3}))?"
    r"\s*(?P<pct>%|percent\b|per\s+cent\b)?"
    r"\s*(?P<unit>(?:[A-Za-z°µ][A-Za-z°µ/.]*(?:\^?[23²³])?\s*){0,3})$"
)
_FRACTION_RE = re.compile(r"^(?P<sign>[-+−]?)\s*(?P<num>\d+)\s*/\s*(?P<den>\d+)$")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LATEX_DEGREE_RE = re.compile(r"\^\s*\{?\\circ\}?|\\%|\\,|\\!|\\ ")


@dataclass(frozen=True)
class ParsedNumber:
    value: float
    percent: bool


def parse_number(text: str) -> ParsedNumber | None:
    """Read ``"1,234.5"``, ``"-3"``, ``"50%"``, ``"$12"``, ``"3 cm"``, ``"1/4"``, ``"x = 5"``.

    Returns None when the text is not a single number (possibly with a unit).
    """
    text = _LATEX_DEGREE_RE.sub(lambda m: "%" if m.group(0) == "\\%" else "", text).strip()
    if text.count("=") == 1:  # "x = 5": grade the right-hand side
        text = text.split("=")[1].strip()
    text = _THOUSANDS_RE.sub("", text)
    fraction = _FRACTION_RE.match(text)
    if fraction:
        denominator = int(fraction["den"])
        if denominator == 0:
            return None
        sign = -1.0 if fraction["sign"] in "-−" and fraction["sign"] else 1.0
        try:
            return ParsedNumber(sign * (int(fraction["num"]) / denominator), False)
        except OverflowError:  # a ratio beyond float range is not a readable number
            return None
    match = _NUMBER_RE.match(text)
    if not match:
        return None
    value = float(match["num"] + (f"e{match['exp']}" if match["exp"] else ""))
    if match["sign"] in ("-", "−"):
        value = -value
    return ParsedNumber(value, bool(match["pct"]))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def numbers_match(pred: ParsedNumber, gold: ParsedNumber) -> bool:
    """Equal values; with a percent on one side only, ``p%`` equals ``p`` or ``p/100``."""
    if pred.percent == gold.percent:
        return _close(pred.value, gold.value)
    percent, plain = (pred, gold) if pred.percent else (gold, pred)
    return _close(percent.value, plain.value) or _close(percent.value / 100.0, plain.value)


def check_numeric(pred: str, gold: str, settings: AccuracySettings) -> AccuracyResult | None:
    pred_number, gold_number = parse_number(pred), parse_number(gold)
    if pred_number is None or gold_number is None:
        return None
    if numbers_match(pred_number, gold_number):
        return AccuracyResult(1.0, "numeric", pred, gold)
    return AccuracyResult(0.0, "numeric_mismatch", pred, gold)


# ---------------------------------------------------------------------------------------------
# Symbolic check
# ---------------------------------------------------------------------------------------------

_MATH_SIGN_RE = re.compile(r"\\[a-zA-Z]+|[=^*/+<>]|\d\s*[a-zA-Z(]|sqrt|\bpi\b|[a-zA-Z]\s*\d")


def looks_mathematical(text: str) -> bool:
    """Formula-like: LaTeX commands, operators, or digits glued to symbols."""
    return bool(_MATH_SIGN_RE.search(text)) and len(text.split()) <= 12


# A literal number or numeric tower "a^{b^{c}}" / "a**b**c" (braces, parentheses, spaces allowed).
_POWER_CHAIN_RE = re.compile(r"\d+(?:\.\d+)?(?:\s*(?:\^|\*\*)\s*[{(]?\s*\d+(?:\.\d+)?)*")
_CHAIN_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_FACTORIAL_RE = re.compile(r"!")
MAX_VALUE_DIGITS = 100_000  # a literal power with more digits is not handed to sympy
MAX_FACTORIAL_ARGUMENT = 20_000  # nor a factorial of more than this (20000! has 77,338 digits)
_SCREEN_WINDOW = 300  # characters before a "!" searched for its argument


def _chain_digits(chain: str) -> float:
    """log10 of a^(b^(c^...)) for the numbers of a chain, read right to left; inf when huge."""
    literals = _CHAIN_NUMBER_RE.findall(chain)
    exponent = 1.0
    for literal in reversed(literals[1:]):
        number = float(literal)  # inf for a literal beyond float range
        if number > 1 and exponent * math.log10(number) > 15:
            return math.inf  # the exponent alone exceeds 10**15
        exponent = number**exponent
    whole = literals[0].split(".")[0].lstrip("0")
    base_digits = len(whole) if len(whole) > 15 else math.log10(max(float(literals[0]), 1.0))
    return exponent * base_digits


def _factorial_argument_digits(text: str, bang: int) -> float:
    """log10 of the largest literal number or tower in the argument of the "!" at ``bang``."""
    before = text[max(0, bang - _SCREEN_WINDOW) : bang].rstrip()
    if before.endswith((")", "}")):  # "(...)!": the bracketed expression
        depth, index = 0, len(before) - 1
        while index >= 0:
            depth += {")": 1, "}": 1, "(": -1, "{": -1}.get(before[index], 0)
            if depth == 0:
                break
            index -= 1
        before = before[max(index, 0) :]
    else:  # "n!": the number right before it
        match = re.search(r"\d+(?:\.\d+)?$", before)
        before = match.group(0) if match else ""
    chains = [_chain_digits(chain.group(0)) for chain in _POWER_CHAIN_RE.finditer(before)]
    return max(chains, default=0.0)


def too_large_to_evaluate(text: str) -> bool:
    """Screen before sympy: a literal power tower or factorial whose value is astronomically large.

    Cheap and conservative (numeric literals only); the worker's limits catch everything else.
    """
    if any(_chain_digits(chain.group(0)) > MAX_VALUE_DIGITS for chain in _POWER_CHAIN_RE.finditer(text)):
        return True
    limit = math.log10(MAX_FACTORIAL_ARGUMENT)
    return any(_factorial_argument_digits(text, bang.start()) > limit for bang in _FACTORIAL_RE.finditer(text))


def symbolic_outcomes(pairs: Sequence[tuple[str, str]], settings: AccuracySettings) -> list[SymbolicOutcome]:
    """math-verify equivalence of (prediction, gold) pairs within the grader's limits.

    ``equal`` is None when either side does not parse or sympy fails; ``limit_hit`` when the
    screen turned the pair away or the worker ran out of time or memory. The pairs that pass
    the screen go to the worker (:mod:`omni_r1.rewards.sandbox`) in one message.
    """
    screened = [too_large_to_evaluate(pred) or too_large_to_evaluate(gold) for pred, gold in pairs]
    asked = [(gold, pred) for (pred, gold), out in zip(pairs, screened, strict=True) if not out]
    answers = iter(symbolic_worker(settings.limits).compare_many(asked, settings.symbolic_timeout_s))
    return [SymbolicOutcome(None, True, 0) if out else next(answers) for out in screened]


def symbolic_outcome(pred: str, gold: str, settings: AccuracySettings) -> SymbolicOutcome:
    """:func:`symbolic_outcomes` of one pair."""
    return symbolic_outcomes([(pred, gold)], settings)[0]


SymbolicFn = Callable[[str, str, AccuracySettings], SymbolicOutcome]


def _symbolic_check(
    pred: str, gold: str, settings: AccuracySettings, outcome_of: SymbolicFn
) -> tuple[AccuracyResult | None, int]:
    """The symbolic check and the count of math-verify timeouts it met."""
    if not (looks_mathematical(pred) or looks_mathematical(gold)):
        return None, 0
    if len(pred) > MAX_SYMBOLIC_CHARS or len(gold) > MAX_SYMBOLIC_CHARS:
        return None, 0
    outcome = outcome_of(pred, gold, settings)
    if outcome.limit_hit:
        return AccuracyResult(0.0, LIMIT_REASON, pred, gold), outcome.library_timeouts
    if outcome.equal is None:
        return None, outcome.library_timeouts
    reason = "symbolic" if outcome.equal else "symbolic_mismatch"
    return AccuracyResult(float(outcome.equal), reason, pred, gold), outcome.library_timeouts


def check_symbolic(pred: str, gold: str, settings: AccuracySettings) -> AccuracyResult | None:
    return _symbolic_check(pred, gold, settings, symbolic_outcome)[0]


# ---------------------------------------------------------------------------------------------
# Multiple-choice check
# ---------------------------------------------------------------------------------------------

_LETTERS = "ABCDEFGHIJ"
_LABEL_RE = re.compile(
    r"^(?:(?:option|choice|answer)\s*)?(?P<open>[(\[])?\s*(?P<letter>[A-Ja-j])\s*[)\]]?(?:\s*[.:)\-]\s*(?P<rest>.*)|\s+(?P<tail>.*))?$",
    re.IGNORECASE | re.DOTALL,
)
_ORDINALS = {
    "first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4,
    "sixth": 5, "seventh": 6, "eighth": 7, "ninth": 8, "tenth": 9,
    "1st": 0, "2nd": 1, "3rd": 2, "4th": 3, "5th": 4,
    "6th": 5, "7th": 6, "8th": 7, "9th": 8, "10th": 9,
    "last": -1,
}  # fmt: skip
_ORDINAL_RE = re.compile(
    r"^(?:the\s+)?(?P<word>" + "|".join(_ORDINALS) + r")(?:\s+(?:option|choice|one|answer))?$",
    re.IGNORECASE,
)
_OPTION_NUMBER_RE = re.compile(r"^(?:option|choice)\s*(?P<number>\d{1,2})$", re.IGNORECASE)


def _fold(text: str) -> str:
    """Case, article and punctuation folding used for text equality."""
    text = text.lower()
    text = re.sub(r"^(?:the|a|an)\s+", "", text)
    text = re.sub(r"[^\w\s%./\-]", " ", text)
    return " ".join(text.split()).strip(" .")


def _letter_index(answer: str, num_choices: int, lowercase_ok: bool) -> int | None:
    match = _LABEL_RE.match(answer)
    if not match:
        return None
    letter = match["letter"]
    if letter.islower() and not lowercase_ok:
        return None
    if match["tail"] and not match["open"] and (letter.islower() or (letter == "A" and not num_choices)):
        return None  # "a cat", or "A cat" with no options: an article, not a label
    index = _LETTERS.index(letter.upper())
    return index if not num_choices or index < num_choices else None


def _ordinal_index(answer: str, num_choices: int) -> int | None:
    match = _ORDINAL_RE.match(answer)
    if match:
        index = _ORDINALS[match["word"].lower()]
        if index < 0:
            index = num_choices - 1 if num_choices else -1
        return index if index >= 0 and (not num_choices or index < num_choices) else None
    match = _OPTION_NUMBER_RE.match(answer)
    if match:
        index = int(match["number"]) - 1
        return index if 0 <= index and (not num_choices or index < num_choices) else None
    return None


def choice_index(answer: str, choices: Sequence[str], *, is_gold: bool) -> int | None:
    """Which option an answer names: its text, its letter, or its ordinal; None if unclear."""
    folded = _fold(answer)
    text_hits = [i for i, choice in enumerate(choices) if _fold(normalize_answer(choice)) == folded]
    if len(text_hits) == 1:
        return text_hits[0]
    lowercase_ok = bool(choices) and not is_gold or len(answer.strip("()[] .")) == 1
    index = _letter_index(answer, len(choices), lowercase_ok=lowercase_ok)
    if index is not None:
        return index
    return _ordinal_index(answer, len(choices))


def check_choice(
    pred: str, gold: str, settings: AccuracySettings, choices: Sequence[str] = ()
) -> AccuracyResult | None:
    gold_index = choice_index(gold, choices, is_gold=True)
    if gold_index is None or (not choices and not re.fullmatch(r"[(\[]?[A-J][)\].]?", gold)):
        return None  # the gold does not name an option: not a multiple-choice answer
    pred_index = choice_index(pred, choices, is_gold=False)
    if pred_index is not None:
        correct = pred_index == gold_index
        return AccuracyResult(float(correct), "choice" if correct else "choice_mismatch", pred, gold)
    if choices:  # a paraphrase of the option text can still be close enough
        return check_text(pred, normalize_answer(choices[gold_index]), settings)
    return AccuracyResult(0.0, "choice_unreadable", pred, gold)


# ---------------------------------------------------------------------------------------------
# Text check
# ---------------------------------------------------------------------------------------------

_NUMBERS_IN_TEXT_RE = re.compile(r"(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?![A-Za-z])")
_LIST_SPLIT_RE = re.compile(r"\s*(?:,|;|\band\b)\s*")


def similarity(a: str, b: str) -> float:
    """difflib ratio of the first MAX_SIMILARITY_CHARS characters."""
    return SequenceMatcher(None, a[:MAX_SIMILARITY_CHARS], b[:MAX_SIMILARITY_CHARS]).ratio()


def _as_set(text: str) -> frozenset[str]:
    """Items of a comma/semicolon/"and" list, each folded."""
    return frozenset(item for item in map(_fold, _LIST_SPLIT_RE.split(text.lower())) if item)


def check_text(pred: str, gold: str, settings: AccuracySettings) -> AccuracyResult | None:
    pred_folded, gold_folded = _fold(pred), _fold(gold)
    if not pred_folded or not gold_folded:
        return AccuracyResult(0.0, "text_mismatch", pred, gold)
    if pred_folded == gold_folded:
        return AccuracyResult(1.0, "text_exact", pred, gold)
    pred_items, gold_items = _as_set(pred), _as_set(gold)
    if len(gold_items) > 1 and pred_items == gold_items:
        return AccuracyResult(1.0, "text_set", pred, gold)
    pred_numbers = [float(x) for x in _NUMBERS_IN_TEXT_RE.findall(pred_folded)]
    gold_numbers = [float(x) for x in _NUMBERS_IN_TEXT_RE.findall(gold_folded)]
    if (pred_numbers or gold_numbers) and pred_numbers != gold_numbers:
        return AccuracyResult(0.0, "text_numbers_differ", pred, gold)
    ratio = similarity(pred_folded, gold_folded)
    if ratio > settings.partial_credit_threshold:
        return AccuracyResult(ratio, "text_partial", pred, gold)
    return AccuracyResult(0.0, "text_mismatch", pred, gold)


# ---------------------------------------------------------------------------------------------
# The grader
# ---------------------------------------------------------------------------------------------

Check = Callable[[str, str, AccuracySettings], AccuracyResult | None]
CHECK_ORDER: dict[AnswerType | None, tuple[str, ...]] = {
    None: ("choice", "numeric", "symbolic", "text"),
    "choice": ("choice", "text"),
    "numeric": ("numeric", "symbolic"),
    "symbolic": ("symbolic", "numeric"),
    "text": ("text",),
}


def grade_answer(
    answer: str,
    gold: str,
    settings: AccuracySettings,
    choices: Sequence[str] = (),
    answer_type: AnswerType | None = None,
    *,
    symbolic: SymbolicFn | None = None,
) -> AccuracyResult:
    """Grade an already extracted answer span against the gold (ordered checks, see module doc).

    Paper Appendix B. ``symbolic`` answers the symbolic check (default :func:`symbolic_outcome`,
    the worker).
    """
    pred, gold_norm = normalize_answer(str(answer)), normalize_answer(str(gold))
    if not pred:
        return AccuracyResult(0.0, "empty_answer", pred, gold_norm)
    outcome_of = symbolic or symbolic_outcome
    library_timeouts = 0

    def check_formula(p: str, g: str, s: AccuracySettings) -> AccuracyResult | None:
        nonlocal library_timeouts
        result, library_timeouts = _symbolic_check(p, g, s, outcome_of)
        return result

    checks: dict[str, Check] = {
        "choice": lambda p, g, s: check_choice(p, g, s, choices),
        "numeric": check_numeric,
        "symbolic": check_formula,
        "text": check_text,
    }
    for name in CHECK_ORDER.get(answer_type, CHECK_ORDER[None]):
        result = checks[name](pred, gold_norm, settings)
        if result is not None:
            return replace(result, library_timeouts=library_timeouts)
    return AccuracyResult(0.0, "no_check_applies", pred, gold_norm, library_timeouts)


def grade_response(
    prediction_text: Any,
    gold: Any,
    settings: AccuracySettings,
    choices: Sequence[str] = (),
    answer_type: AnswerType | None = None,
    *,
    symbolic: SymbolicFn | None = None,
) -> AccuracyResult:
    """Extract the final answer from a whole response and grade it. Never raises.

    Paper §4.2 accuracy reward, Appendix B.

    Args:
        prediction_text: the model's response (text, image segments shown as ``<image>``).
        gold: the reference answer (a letter, number, formula or text).
        settings: threshold, timeout and limits, from params.yaml ``reward``.
        choices: option texts of a multiple-choice question, in letter order.
        answer_type: restrict the checks (``CHECK_ORDER``); None tries all in order.
        symbolic: answers the symbolic check (default: the bounded worker).

    Returns:
        An :class:`AccuracyResult` with score in [0, 1] and the reason.
    """
    try:
        answer = extract_final_answer(prediction_text)
        if answer is None:
            return AccuracyResult(0.0, "no_final_answer", "", str(gold))
        return grade_answer(
            answer, str(gold), settings, tuple(map(str, choices)), answer_type, symbolic=symbolic
        )
    except Exception as err:  # a grader bug must not stop training: score 0, say why
        return AccuracyResult(0.0, f"grader_error: {type(err).__name__}: {err}", "", str(gold))


@dataclass(frozen=True)
class GradeRequest:
    """One response to grade (the arguments of :func:`grade_response`)."""

    prediction_text: Any
    gold: Any
    choices: Sequence[str] = ()
    answer_type: AnswerType | None = None


def grade_responses(requests: Sequence[GradeRequest], settings: AccuracySettings) -> list[AccuracyResult]:
    """:func:`grade_response` for a batch, with one worker round-trip for all its formulas.

    A first pass grades every response and notes the (prediction, gold) pairs that reach
    the symbolic check; they go to the worker together (:func:`symbolic_outcomes`), and
    only the responses that asked are graded again with the answers. Same results as
    grading one by one.
    """
    asked: list[tuple[str, str]] = []

    def note(pred: str, gold: str, _: AccuracySettings) -> SymbolicOutcome:
        asked.append((pred, gold))
        return SymbolicOutcome(None, False, 0)

    def grade(request: GradeRequest, symbolic: SymbolicFn) -> AccuracyResult:
        return grade_response(
            request.prediction_text, request.gold, settings, request.choices, request.answer_type,
            symbolic=symbolic,
        )  # fmt: skip

    results, waiting = [], []
    for index, request in enumerate(requests):
        before = len(asked)
        results.append(grade(request, note))
        if len(asked) > before:
            waiting.append(index)
    if not waiting:
        return results
    pairs = list(dict.fromkeys(asked))
    answers = dict(zip(pairs, symbolic_outcomes(pairs, settings), strict=True))
    for index in waiting:
        results[index] = grade(requests[index], lambda pred, gold, _: answers[(pred, gold)])
    return results


def accuracy_reward(
    prediction_text: Any,
    gold: Any,
    choices: Sequence[str] = (),
    answer_type: AnswerType | None = None,
    *,
    settings: AccuracySettings,
) -> float:
    """Accuracy reward R_acc in [0, 1] (Appendix B); see :func:`grade_response`."""
    return grade_response(prediction_text, gold, settings, choices, answer_type).score


def strict_settings(settings: AccuracySettings) -> AccuracySettings:
    """The same verifier with partial credit switched off (similarity never exceeds 1)."""
    return replace(settings, partial_credit_threshold=1.0)


def grade_responses_strict(requests: Sequence[GradeRequest], settings: AccuracySettings) -> list[AccuracyResult]:
    """:func:`grade_responses` without partial credit: every score is 0 or 1."""
    return grade_responses(requests, strict_settings(settings))


def grade_response_strict(
    prediction_text: Any,
    gold: Any,
    settings: AccuracySettings,
    choices: Sequence[str] = (),
    answer_type: AnswerType | None = None,
) -> AccuracyResult:
    """:func:`grade_response` without partial credit: every score is 0 or 1.

    Paper Appendix B.
    """
    return grade_response(prediction_text, gold, strict_settings(settings), choices, answer_type)
