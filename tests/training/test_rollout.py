"""PeRPO rollouts without a trainer: prompts, cursor, scoring of given token ids, filter."""

from __future__ import annotations

import math

import torch
from test_perpo import input_codes, make_records

from omni_r1.training.rollout import (
    PromptCursor,
    Response,
    build_prompts,
    keep_mixed_groups,
    response_lengths,
    reward_scorer,
    score_responses,
)


def test_score_responses_grades_token_ids_generated_elsewhere(tiny_builder, cfg):
    """Ids from outside the sampler (as a verl reward manager gets them) go through the one grader."""
    tiny = tiny_builder(seed=0)
    records = make_records(2, mixed={0})  # golds: "mixed", "uniform"
    codes = input_codes(records, tiny.layout.num_codes, tiny.layout.tokens_per_image)
    prompts = build_prompts(records, codes, tiny.layout, tiny.tokenizer, source="test")
    texts = ["THOUGHT 1: look.\nFinal Answer: mixed", "THOUGHT 1: look.\nFinal Answer: mixed"]
    rows = [
        torch.tensor([*tiny.tokenizer(text, add_special_tokens=False).input_ids, tiny.layout.eos_id])
        for text in texts
    ]
    scored = score_responses(
        tiny.tokenizer, tiny.layout, rows, prompts, [0, 1], [7, 8],
        reward_scorer(cfg, tiny.model, tiny.layout),
    )  # fmt: skip
    assert [r.accuracy for r in scored] == [1.0, 0.0]  # right for record 0, wrong for record 1
    assert [r.format for r in scored] == [1.0, 1.0]
    assert [(r.prompt_index, r.group) for r in scored] == [(0, 7), (1, 8)]
    assert all(not r.has_image and math.isnan(r.perception) for r in scored)
    assert [r.text.strip() for r in scored] == texts
    assert scored[0].reward > scored[1].reward


def test_response_lengths_stop_at_first_eos():
    eos = 2
    generated = torch.tensor([[5, 6, eos, 1, 1], [5, eos, 7, eos, 1], [5, 6, 7, 8, 9]])
    assert response_lengths(generated, eos).tolist() == [3, 2, 5]


def test_prompt_cursor_is_a_seeded_permutation_per_epoch():
    cursor = PromptCursor(5, seed=3)
    first, second = cursor.take(5), cursor.take(5)
    assert sorted(first) == sorted(second) == list(range(5))
    resumed = PromptCursor(5, seed=3, position=3)
    assert resumed.take(4) == (first + second)[3:7]


def test_filter_metric_accuracy_ignores_reward_only_differences():
    def response(group: int, reward: float, accuracy: float) -> Response:
        return Response(
            prompt_index=group, group=group, prompt_ids=torch.zeros(1, dtype=torch.long),
            response_ids=torch.zeros(1, dtype=torch.long), text="", image_codes=torch.zeros(0, 4),
            reward=reward, accuracy=accuracy, format=1.0, perception=0.5, has_image=True,
        )

    # group 0: perception makes rewards differ, every answer wrong; group 1: one answer right
    responses = [response(0, 0.10, 0.0), response(0, 0.12, 0.0),
                 response(1, 0.10, 0.0), response(1, 0.95, 1.0)]
    by_reward = keep_mixed_groups(responses, "reward")
    by_accuracy = keep_mixed_groups(responses, "accuracy")
    assert [g[0].group for g in by_reward] == [0, 1]
    assert [g[0].group for g in by_accuracy] == [1]
