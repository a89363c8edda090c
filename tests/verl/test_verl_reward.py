"""verl's DataProto of tiny-model rollouts, scored by the reward manager: the local engine's rewards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from verl_helpers import make_codes, make_records

from omni_r1.model.packing import left_pad_prompts
from omni_r1.training.rollout import (
    build_prompts,
    generate_and_score,
    reward_scorer,
    right_pad,
    rollout_settings,
)
from omni_r1.verl.data import rlhf_rows
from omni_r1.verl.settings import VerlPaths, hydra_args, verl_overrides

pytest.importorskip("verl")


def _crafted_response(tiny, answer: str) -> torch.Tensor:
    """A well-formed trajectory with one complete image and the given final answer [N]."""
    layout, tokenizer = tiny.layout, tiny.tokenizer
    text = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    codes = torch.arange(layout.tokens_per_image) % layout.num_codes
    ids = [layout.reasoning_open_id, *text("THOUGHT 1: zoom in.\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n")]
    ids += [layout.boi_id, *layout.codes_to_ids(codes).tolist(), layout.eoi_id]
    ids += [*text("\n"), layout.reasoning_close_id, layout.answer_open_id, *text(f"Final Answer: {answer}")]
    return torch.tensor([*ids, layout.answer_close_id, layout.eos_id])


def _data_proto(prompts, rows, parquet_rows):
    from verl import DataProto

    prompt_ids, prompt_mask = left_pad_prompts(prompts, pad_id=1)  # [B, P]
    response_ids, response_mask = right_pad(rows, pad_id=1)  # [B, N]
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": torch.cat([prompt_mask, response_mask], dim=1),
        },
        non_tensors={
            key: np.array([row[key] for row in parquet_rows], dtype=object)
            for key in ("data_source", "reward_model", "extra_info")
        },
    )


def test_reward_manager_equals_the_local_engine_on_the_same_responses(compose_verl, cfg, tiny_checkpoint):
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    folder, tiny = tiny_checkpoint
    cfg = cfg.model_copy(update={"perpo": cfg.perpo.model_copy(update={"rollout_n": 4, "max_new_tokens": 48})})
    records = make_records(3)
    codes = make_codes(records, tiny.layout)
    prompts = build_prompts(records, codes, tiny.layout, tiny.tokenizer, "perpo_train")
    scorer = reward_scorer(cfg, tiny.model, tiny.layout)
    torch.manual_seed(0)
    local = generate_and_score(tiny.model, tiny.tokenizer, tiny.layout, prompts, [0, 1], 0, rollout_settings(cfg), scorer)
    # one response per answer type that the grader accepts, each with a complete image
    from omni_r1.training.rollout import score_responses

    crafted = [_crafted_response(tiny, answer) for answer in ("B", "42", "red")]
    local += score_responses(tiny.tokenizer, tiny.layout, crafted, prompts, [0, 1, 2], [9, 9, 9], scorer)
    assert any(response.has_image for response in local) and any(response.accuracy == 1.0 for response in local)

    paths = VerlPaths(str(folder), "t.parquet", "t.parquet", "ck", "agent_loops.yaml")
    config = compose_verl(hydra_args(verl_overrides(cfg, "omni_r1", paths)))
    manager = load_reward_manager(config, AutoTokenizer.from_pretrained(folder))  # verl's own loader
    rows_by_prompt = rlhf_rows(records, codes, "perpo_train")
    data = _data_proto(
        [r.prompt_ids for r in local], [r.response_ids for r in local], [rows_by_prompt[r.prompt_index] for r in local]
    )

    async def score_all():
        return [await manager.run_single(data[i : i + 1]) for i in range(len(data))]

    results = manager.loop.run_until_complete(score_all())  # the loop verl made it with
    for result, response in zip(results, local, strict=True):
        extra = result["reward_extra_info"]
        assert result["reward_score"] == pytest.approx(response.reward, abs=1e-6)
        assert extra["acc"] == response.accuracy and extra["format"] == response.format
        assert extra["has_image"] == float(response.has_image)
        if response.has_image:
            assert extra["perception"] == pytest.approx(response.perception, abs=1e-6)
        else:
            assert math.isnan(extra["perception"])
    scores = type(manager).assemble_rm_scores(data, [result["reward_score"] for result in results])  # [B, N]
    torch.testing.assert_close(scores.sum(-1), torch.tensor([r.reward for r in local], dtype=torch.float32))
