"""Judges: the rule judge is the reward's verifier; the LLM judge against a local fake endpoint.

The endpoint is a stdlib ``http.server`` on 127.0.0.1 speaking ``/v1/chat/completions``;
each test scripts its replies (text, HTTP status, delay) and reads back what was asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from omni_r1.eval.judges import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_USER_TEMPLATE,
    JudgeCache,
    JudgeError,
    JudgeItem,
    build_judge,
    gold_for_judge,
    llm_judge,
    parse_reply,
    rule_judge,
)
from omni_r1.rewards.registry import accuracy_grader


@dataclass
class Scripted:
    """Replies served in order; the last one repeats. Each: (status, text, delay seconds)."""

    replies: list[tuple[int, str, float]]
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, body: dict) -> tuple[int, str, float]:
        with self.lock:
            self.requests.append(body)
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def make_handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, text, delay = script.next_reply({"path": self.path, **body})
            time.sleep(delay)
            if status != 200:
                payload = {"error": {"message": text, "type": "server_error"}}
            else:
                payload = {
                    "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                }  # fmt: skip
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def endpoint() -> Iterator:
    """Start a scripted server; yields ``serve(replies) -> (base_url, script)``."""
    servers = []

    def serve(replies: list[tuple[int, str, float]]) -> tuple[str, Scripted]:
        script = Scripted(list(replies))
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", script

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def llm_settings(cfg, base_url: str, tmp_path: Path, **changes):
    values = {
        "base_url": base_url, "model": "judge-test", "api_key_env": "OMNI_R1_TEST_JUDGE_KEY",
        "timeout_s": 2.0, "max_retries": 3, "backoff_s": 0.01, "concurrency": 2,
        "cache_path": str(tmp_path / "judge.sqlite"),
    }  # fmt: skip
    return cfg.judge.llm.model_copy(update={**values, **changes})


ITEMS = [
    JudgeItem(gold="42", response="THOUGHT 1: count.\nFinal Answer: 42 apples"),
    JudgeItem(gold="B", response="Final Answer: the second option", choices=("red", "blue")),
    JudgeItem(gold="7", response="THOUGHT 1: no answer here"),
]


def test_rule_judge_is_the_reward_grader_with_a_threshold(cfg) -> None:
    items = [
        JudgeItem(gold="42", response="Final Answer: 42"),
        JudgeItem(gold="B", response="Final Answer: (b) blue", choices=("red", "blue")),
        JudgeItem(gold="the red circle", response="Final Answer: the red circles"),
        JudgeItem(gold="5", response="Final Answer: 9"),
        JudgeItem(gold="5", response="no final answer"),
    ]
    grade = accuracy_grader(cfg.reward)
    scores = [grade(i.response, i.gold, i.choices).score for i in items]
    assert 0.0 < scores[2] < 1.0  # partial credit from the verifier
    strict = rule_judge(cfg.reward, threshold=1.0)(items)
    lenient = rule_judge(cfg.reward, threshold=0.5)(items)
    assert [v.score for v in strict] == scores  # the very same grades
    assert [v.correct for v in strict] == [True, True, False, False, False]
    assert [v.correct for v in lenient] == [True, True, True, False, False]
    assert build_judge(cfg.judge, cfg.reward)(items)[0].correct  # embedded default: rule


def test_reply_parsing_is_strict() -> None:
    assert parse_reply("True") is True and parse_reply(" False\n") is False
    for reply in ["true", "TRUE", "True.", "Yes", "True or False", "", None, "False, because"]:
        assert parse_reply(reply) is None


def test_prompt_compares_only_gold_and_answer_with_options_for_choices(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(200, "True", 0.0)])
    verdicts = llm_judge(llm_settings(cfg, base_url, tmp_path))(ITEMS)
    assert [v.correct for v in verdicts] == [True, True, False]
    assert verdicts[2].reason == "no_final_answer"  # never sent to the judge
    assert len(script.requests) == 2
    request = script.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["model"] == "judge-test"
    assert request["messages"][0]["content"] == JUDGE_SYSTEM_PROMPT
    users = sorted(r["messages"][1]["content"] for r in script.requests)
    assert users[0] == JUDGE_USER_TEMPLATE.format(ground_truth="42", model_answer="42 apples")
    assert gold_for_judge("B", ("red", "blue")) in users[1] and "(B) blue" in users[1]
    assert "count." not in " ".join(users)  # the reasoning is not shown


def test_malformed_replies_count_as_false_and_are_flagged(cfg, endpoint, tmp_path) -> None:
    base_url, _ = endpoint([(200, "Yes, it is correct.", 0.0)])
    verdicts = llm_judge(llm_settings(cfg, base_url, tmp_path))(ITEMS[:2])
    assert [v.correct for v in verdicts] == [False, False]
    assert all(v.malformed and v.reason.startswith("malformed_reply") for v in verdicts)


def test_server_errors_are_retried_until_success(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(500, "boom", 0.0), (503, "busy", 0.0), (200, "True", 0.0)])
    verdicts = llm_judge(llm_settings(cfg, base_url, tmp_path))(ITEMS[:1])
    assert verdicts[0].correct and not verdicts[0].malformed
    assert len(script.requests) == 3


def test_retries_run_out_with_an_error_naming_the_endpoint(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(500, "down", 0.0)])
    with pytest.raises(JudgeError, match="judge-test.*3 attempt"):
        llm_judge(llm_settings(cfg, base_url, tmp_path, max_retries=2))(ITEMS[:1])
    assert len(script.requests) == 3


def test_client_errors_are_not_retried(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(401, "bad key", 0.0)])
    with pytest.raises(JudgeError, match="1 attempt"):
        llm_judge(llm_settings(cfg, base_url, tmp_path))(ITEMS[:1])
    assert len(script.requests) == 1


def test_slow_reply_times_out_and_is_retried(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(200, "True", 1.0), (200, "False", 0.0)])
    settings = llm_settings(cfg, base_url, tmp_path, timeout_s=0.2)
    verdicts = llm_judge(settings)(ITEMS[:1])
    assert len(script.requests) == 2  # the slow first reply was abandoned
    assert verdicts[0].correct is False and not verdicts[0].malformed


def test_cache_makes_a_rerun_free_and_is_keyed_by_model(cfg, endpoint, tmp_path) -> None:
    base_url, script = endpoint([(200, "True", 0.0)])
    settings = llm_settings(cfg, base_url, tmp_path)
    first = llm_judge(settings)(ITEMS)
    asked = len(script.requests)
    second = llm_judge(settings)(ITEMS)  # a new judge, same cache file
    assert len(script.requests) == asked == 2
    assert first == second
    cache = JudgeCache(settings.cache_path)
    assert cache.get("42", "42 apples", "judge-test") == "True"
    assert cache.get("42", "42 apples", "another-model") is None
    llm_judge(settings.model_copy(update={"model": "another-model"}))(ITEMS[:1])
    assert len(script.requests) == 3


# Appendix F, Table 7 of the paper (arXiv 2601.09536), typed out from the paper.
PAPER_SYSTEM_PROMPT = (
    "You are a strict QA judge.\n"
    "Decide correctness by comparing ONLY the ground-truth answer and the model answer. "
    "The question may be multiple-choice or open-ended.\n"
    "OUTPUT:\n"
    "Return exactly one token with NO quotes/punctuation/spaces/code fences: True or False.\n"
    "GENERAL RULES:\n"
    "1) Judge factual/semantic equivalence; ignore phrasing, filler, or reasoning text. If the model\u2019s "
    "final claim contradicts the ground truth or hedges without committing, return False.\n"
    "2) Numbers: allow formatting differences (1,000 vs 1000), scientific notation, or rounding that "
    "preserves the stated value. If units are present, require the same value after conversion; "
    "missing/extra incompatible units => False.\n"
    "3) Lists/sets: require the same items; order doesn\u2019t matter. Missing or extra items => False.\n"
    "4) Spans/names: accept common synonyms and aliases that uniquely indicate the same entity.\n"
    "5) If ambiguous, empty, multiple conflicting answers, or cannot be judged, return False.\n"
    "SPECIAL RULES FOR MULTIPLE-CHOICE (only when options are provided below):\n"
    "A) Treat option LETTERS and their NUMERIC ORDINALS as equivalent (A=1, B=2, C=3, \u2026), but ONLY "
    "within this question\u2019s options.\n"
    "B) Treat the CORRECT OPTION\u2019S FULL TEXT as equivalent to its letter and numeric index.\n"
    "Your final output must be only the single token: True or False."
)
PAPER_USER_PROMPT = (
    "### Ground Truth\n{Ground Truth}\n### Model Answer\n{Model Answer}\n### Decision\n"
    "Return only one of: True, False."
)


def test_judge_prompts_are_table_7_verbatim() -> None:
    assert JUDGE_SYSTEM_PROMPT == PAPER_SYSTEM_PROMPT
    filled = JUDGE_USER_TEMPLATE.format(ground_truth="5 cm", model_answer="{5}")
    assert filled == PAPER_USER_PROMPT.replace("{Ground Truth}", "5 cm").replace("{Model Answer}", "{5}")
