"""The optional fidelity reward term in PeRPO scoring: sign, weight, and off means not computed."""

from __future__ import annotations

import math

import pytest
import torch
from hand_batch import HAND_CODEBOOK, HAND_IDS, HAND_LAYOUT, HAND_MASK
from PIL import Image

from omni_r1.executor import Executor
from omni_r1.model.generation import decode_interleaved
from omni_r1.rewards.combined import add_fidelity_term
from omni_r1.rewards.registry import score_batch
from omni_r1.training.rollout import PromptItem, reward_scorer, rollout_metrics, score_responses
from omni_r1.trajectory import BBox

BEFORE = "THOUGHT 1: box it.\nACTION: BBOX(0.1, 0.1, 0.4, 0.4)\n"
AFTER = "\nFinal Answer: 3"


def test_term_by_hand() -> None:
    reward = torch.tensor([0.5, 0.5, 0.5])
    fidelity = torch.tensor([1.0, 0.25, math.nan])  # the third response has no scored image
    # 0.5 + 0.2·1.0 = 0.7 ; 0.5 + 0.2·0.25 = 0.55 ; no term: 0.5
    torch.testing.assert_close(add_fidelity_term(reward, fidelity, 0.2), torch.tensor([0.7, 0.55, 0.5]))


def test_score_batch_adds_weighted_fidelity(cfg) -> None:

    layout, codebook = HAND_LAYOUT, HAND_CODEBOOK
    ids, mask = HAND_IDS, HAND_MASK
    texts = ["THOUGHT 1: look.\n<image>\nFinal Answer: 4", "THOUGHT 1: guess.\nFinal Answer: 5"]
    weighted = cfg.reward.model_copy(update={"fidelity_weight": 0.3})
    base = score_batch(weighted, texts, ["4", "4"], ids, mask, codebook, layout)
    plus = score_batch(weighted, texts, ["4", "4"], ids, mask, codebook, layout, fidelity=torch.tensor([0.5, math.nan]))
    # + 0.3·0.5 = 0.15 on row 0; row 1 has no scored image
    torch.testing.assert_close(plus.reward - base.reward, torch.tensor([0.15, 0.0]))
    assert base.fidelity is None


@pytest.fixture(scope="module")
def tiny(tiny_builder):
    return tiny_builder(seed=0)


def hand_batch(tiny, cfg):
    """Two responses drawing BBOX on a scene: row 0 draws the rendering's codes, row 1 a shifted box."""
    from omni_r1.rewards.fidelity import visual_codec

    scene = Image.new("RGB", (64, 64), (200, 200, 200))
    executor = Executor(cfg.executor)
    right = executor.execute(BBox(x=0.1, y=0.1, w=0.4, h=0.4), scene).image
    wrong = executor.execute(BBox(x=0.5, y=0.5, w=0.4, h=0.4), scene).image
    codes = visual_codec(tiny.model.model.vqmodel, None, 4).encode([right, wrong])  # [2, H*W]
    layout, tokenizer = tiny.layout, tiny.tokenizer

    def ids(row: torch.Tensor) -> torch.Tensor:
        text = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        body = [layout.boi_id, *layout.codes_to_ids(row).tolist(), layout.eoi_id]
        return torch.tensor([*text(BEFORE), *body, *text(AFTER), layout.eos_id])

    rows = [ids(codes[0]), ids(codes[1])]
    item = PromptItem("r0", torch.tensor([layout.bos_id]), "3", (), "numeric", "q", (scene,), None)
    return rows, [item, item]


def scored(tiny, cfg, weight: float):
    weighted = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"fidelity_weight": weight})})
    rows, owners = hand_batch(tiny, cfg)
    scorer = reward_scorer(weighted, tiny.model, tiny.layout)
    return score_responses(tiny.tokenizer, tiny.layout, rows, owners, [0, 0], [0, 0], scorer)


def test_rollout_reward_rises_by_weight_times_fidelity(tiny, cfg) -> None:
    rows, _ = hand_batch(tiny, cfg)
    assert decode_interleaved(tiny.tokenizer, tiny.layout, rows[0])[0] == BEFORE + "<image>" + AFTER
    off, on = scored(tiny, cfg, 0.0), scored(tiny, cfg, 0.5)
    assert [r.fidelity for r in on][0] == 1.0 and on[1].fidelity < 1.0  # equal codes vs a shifted box
    for before, after in zip(off, on, strict=True):
        assert after.reward - before.reward == pytest.approx(0.5 * after.fidelity)  # positive sign, weight 0.5
        assert after.accuracy == before.accuracy == 1.0
    assert on[0].reward > on[1].reward
    assert "reward/fidelity" in rollout_metrics(on, 1.0)


def test_weight_zero_computes_nothing_and_changes_nothing(tiny, cfg) -> None:
    rows, owners = hand_batch(tiny, cfg)
    state = torch.get_rng_state()
    off = scored(tiny, cfg, 0.0)
    assert torch.equal(state, torch.get_rng_state())  # no random numbers drawn
    assert all(math.isnan(r.fidelity) for r in off)
    assert "reward/fidelity" not in rollout_metrics(off, 1.0)
    # the default scorer of the trainer (no decoder argument) gives bit-identical rewards
    plain = score_responses(tiny.tokenizer, tiny.layout, rows, owners, [0, 0], [0, 0], reward_scorer(cfg, tiny.model, tiny.layout))
    assert [r.reward for r in plain] == [r.reward for r in off]


def test_psnr_headline_without_decoder_is_a_clear_error(tiny, cfg) -> None:
    psnr_cfg = cfg.model_copy(update={
        "reward": cfg.reward.model_copy(update={"fidelity_weight": 0.1}),
        "fidelity": cfg.fidelity.model_copy(update={"headline": "psnr"}),
    })  # fmt: skip
    with pytest.raises(ValueError, match="needs a VQ decoder"):
        reward_scorer(psnr_cfg, tiny.model, tiny.layout)
