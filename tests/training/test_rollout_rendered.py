"""Rendered images (the study's rendered regime): inserted at BOI by the executor, context in training."""

from __future__ import annotations

import math

import pytest
import torch
from hand_batch import HAND_IDS, HAND_LAYOUT
from PIL import Image

from omni_r1.executor import Executor
from omni_r1.model.generation import InterleavedLogitsProcessor, tool_context_mask
from omni_r1.rendering import ImageRenderer
from omni_r1.rewards.fidelity import visual_codec
from omni_r1.training.grpo import ppo_loss
from omni_r1.training.rollout import Response, collate_responses
from omni_r1.trajectory import BBox


def hand_response(ids: torch.Tensor, inserted: bool) -> Response:
    return Response(
        prompt_index=0, group=0, prompt_ids=torch.tensor([0, 26]), response_ids=ids, text="",
        image_codes=torch.empty(0, 4, dtype=torch.long), reward=1.0, accuracy=1.0, format=1.0,
        perception=math.nan, has_image=False,
        context_mask=tool_context_mask(ids, HAND_LAYOUT) if inserted else None,
    )  # fmt: skip


def test_inserted_tokens_get_zero_policy_loss_kl_and_entropy_weight():
    """Row 0 of the hand batch: text 26, BOI 21, image 10..13, EOI 20, text 27 (image + EOI inserted)."""
    batch = collate_responses([hand_response(HAND_IDS[0], True), hand_response(HAND_IDS[0], False)], pad_id=1)
    assert batch.response_mask[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 1]  # BOI stays the policy's action
    assert batch.response_mask[1].tolist() == [1] * 8  # the same ids written by the model
    assert batch.attention_mask[:, 2:].tolist() == [[1] * 8, [1] * 8]  # inserted tokens stay attended
    log_prob = torch.full((2, 8), -1.0, requires_grad=True)  # [B, N]
    entropy = torch.full((2, 8), 2.0, requires_grad=True)  # [B, N]
    loss, _ = ppo_loss(
        log_prob, torch.full((2, 8), -1.2), torch.ones(2, 8), batch.response_mask,
        clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode="token-mean",
        entropy_coeff=0.001, kl_loss_coef=0.003, kl_loss_type="low_var_kl",
        ref_log_prob=torch.full((2, 8), -0.5), entropy=entropy,
    )  # fmt: skip
    loss.backward()
    inserted = torch.tensor([False, False, True, True, True, True, True, False])
    assert torch.all(log_prob.grad[0, inserted] == 0) and torch.all(entropy.grad[0, inserted] == 0)
    assert torch.all(log_prob.grad[0, ~inserted] != 0) and torch.all(log_prob.grad[1] != 0)


def test_processor_forces_the_tools_codes_after_boi_then_eoi():
    """A decoding loop over random scores: row 0 writes BOI first, the tool's codes follow, then EOI."""
    calls = []

    def tool(rows, generated):
        calls.append((list(rows), [g.tolist() for g in generated]))
        return torch.tensor([[3, 2, 1, 0]] * len(rows))  # [rows, H*W]

    processor = InterleavedLogitsProcessor(HAND_LAYOUT, batch_size=2, max_new_tokens=10, image_tool=tool)
    ids = torch.tensor([[0, 26], [0, 27]])  # [B, 2] prompts
    generator = torch.Generator().manual_seed(0)
    for step in range(8):
        scores = torch.randn(2, HAND_LAYOUT.vocab_size, generator=generator)  # [B, V]
        if step == 0:
            scores[0, HAND_LAYOUT.boi_id] = 100.0
            scores[1, HAND_LAYOUT.boi_id] = -100.0
        scores[:, HAND_LAYOUT.eos_id] = -100.0
        next_ids = processor(ids, scores).argmax(-1, keepdim=True)  # [B, 1]
        ids = torch.cat([ids, next_ids], dim=1)
    generated = ids[:, 2:]  # [B, 8]
    assert generated[0, :6].tolist() == [21, 13, 12, 11, 10, 20]  # BOI, codes 3,2,1,0 + offset 10, EOI
    assert calls == [([0], [[21]])]  # once, for row 0, with its response so far
    assert tool_context_mask(generated[0], HAND_LAYOUT).tolist() == [False] + [True] * 5 + [False, False]


@pytest.fixture(scope="module")
def tiny(tiny_builder):
    return tiny_builder(seed=0)


def renderer_and_ids(tiny, cfg, text: str) -> tuple[ImageRenderer, torch.Tensor]:
    codec = visual_codec(tiny.model.model.vqmodel, None, 8)
    renderer = ImageRenderer(Executor(cfg.executor), codec.encode, tiny.tokenizer, tiny.layout)
    ids = tiny.tokenizer(text, add_special_tokens=False).input_ids + [tiny.layout.boi_id]
    return renderer, torch.tensor(ids)


def test_renderer_inserts_the_executors_image_of_the_action_encoded_by_the_vq(tiny, cfg):
    v0 = Image.new("RGB", (64, 64), (40, 90, 200))
    renderer, ids = renderer_and_ids(tiny, cfg, "THOUGHT 1: box it.\nACTION: BBOX(0.1, 0.1, 0.5, 0.5)\n")
    codes = renderer.tool([(v0, None)])([0], [ids])  # [1, H*W]
    drawn = Executor(cfg.executor).execute(BBox(x=0.1, y=0.1, w=0.5, h=0.5), v0).image
    assert torch.equal(codes, renderer.encode([drawn]))
    assert not torch.equal(codes, renderer.encode([v0]))  # the box changed the image


def test_renderer_shows_the_state_unchanged_when_the_step_has_no_action(tiny, cfg):
    v0 = Image.new("RGB", (64, 64), (200, 30, 30))
    renderer, ids = renderer_and_ids(tiny, cfg, "THOUGHT 1: just look.\n")
    assert torch.equal(renderer.tool([(v0, None)])([0], [ids]), renderer.encode([v0]))


def test_rendered_rollouts_insert_the_executors_image_and_mark_it_context(tiny, cfg):
    """The rollout path end to end with a tiny Chameleon: BOI (biased to come first), the renderer's codes, EOI."""
    from test_perpo import input_codes, make_records

    from omni_r1.training.rollout import (
        RolloutSettings,
        build_prompts,
        reward_scorer,
        sample_responses,
        score_responses,
    )

    layout = tiny.layout
    records = make_records(1, mixed=set())
    prompts = build_prompts(records, input_codes(records, layout.num_codes, layout.tokens_per_image), layout, tiny.tokenizer, "test")
    renderer, _ = renderer_and_ids(tiny, cfg, "")
    settings = RolloutSettings(
        n=2, max_new_tokens=layout.tokens_per_image + 8, max_images=1, batch_size=2,
        sampling={"max_new_tokens": layout.tokens_per_image + 8, "do_sample": True, "top_k": 0, "sequence_bias": {(layout.boi_id,): 100.0}},
    )  # fmt: skip
    torch.manual_seed(0)
    rows = sample_responses(tiny.model, layout, [prompts[0].prompt_ids], settings, renderer=renderer, owners=prompts)
    expected = layout.codes_to_ids(renderer.encode([prompts[0].input_images[0]])[0])  # v_0: no action to draw
    for row in rows:
        assert row[0] == layout.boi_id and row[layout.tokens_per_image + 1] == layout.eoi_id
        assert torch.equal(row[1 : layout.tokens_per_image + 1], expected)
    scored = score_responses(
        tiny.tokenizer, layout, rows, [prompts[0]] * 2, [0, 0], [0, 0], reward_scorer(cfg, tiny.model, layout), tool_inserted=True
    )  # fmt: skip
    batch = collate_responses(scored, layout.pad_id)
    inserted = slice(1, layout.tokens_per_image + 2)
    assert torch.all(batch.response_mask[:, inserted] == 0) and torch.all(batch.response_mask[:, 0] == 1)
    assert all(not r.has_image for r in scored)  # the perception reward reads no inserted image
