"""verl reward manager for PeRPO: response token ids in, the local engine's reward out.

verl's stock managers decode text and score strings; the perception reward needs the
generated image tokens (REFERENCE §5). :class:`OmniRewardManager` (selected with
``reward.reward_manager.source=importlib``, ``module.path=pkg://omni_r1.verl.reward``)
takes each rollout's valid response ids, splits the image segments with the checkpoint's
:class:`~omni_r1.model.layout.TokenLayout`, and scores them with the scorer of the local
engine's rollouts: :func:`omni_r1.training.rollout.score_responses` with
:func:`~omni_r1.training.rollout.codebook_scorer` (accuracy with the one grader, format,
perception against the frozen codebook, combined as ``reward`` in params.yaml says). It returns the total as the reward and
``acc``, ``format``, ``perception`` and ``has_image`` as extra info, so
``algorithm.filter_groups.metric=acc`` filters on accuracy as the local engine does.

Settings come from the job's config: the reward section under ``omni_r1.reward`` (written
by :func:`omni_r1.verl.settings.verl_overrides`), the checkpoint from
``actor_rollout_ref.model.path``; the codebook is read from its weights once per process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from transformers import AutoConfig
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from omni_r1.config import RewardConfig
from omni_r1.model.layout import TokenLayout
from omni_r1.training.rollout import PromptItem, Response, Scorer, codebook_scorer, score_responses

CODEBOOK_WEIGHT = "model.vqmodel.quantize.embedding.weight"  # ChameleonForConditionalGeneration


def load_codebook(model_dir: Path | str) -> torch.Tensor:
    """The frozen VQ codebook [K, D] from a checkpoint's safetensors, without loading the model."""
    folder = Path(model_dir)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = [json.loads(index.read_text())["weight_map"][CODEBOOK_WEIGHT]]
    else:
        files = sorted(path.name for path in folder.glob("*.safetensors"))
    for name in files:
        with safe_open(str(folder / name), framework="pt") as weights:
            if CODEBOOK_WEIGHT in weights.keys():
                return weights.get_tensor(CODEBOOK_WEIGHT).float()  # [K, D]
    raise KeyError(f"{folder}: no {CODEBOOK_WEIGHT} in its safetensors files")


@dataclass(frozen=True)
class RewardContext:
    """What scoring needs besides the responses: tokenizer, layout and the scorer."""

    tokenizer: Any
    layout: TokenLayout
    scorer: Scorer


def reward_context(config: Any, tokenizer: Any) -> RewardContext:
    """The local engine's scorer, built from a verl job config (``omni_r1.reward``, model path)."""
    model_dir = config.actor_rollout_ref.model.path
    reward = RewardConfig.model_validate(OmegaConf.to_container(config.omni_r1.reward, resolve=True))
    layout = TokenLayout.from_model(AutoConfig.from_pretrained(model_dir), tokenizer)
    return RewardContext(tokenizer, layout, codebook_scorer(reward, load_codebook(model_dir), layout))


def prompt_of(item: Any) -> PromptItem:
    """A DataProto item's prompt as the scorer reads it (gold answer, choices, answer type)."""
    extra = item.non_tensor_batch.get("extra_info") or {}
    return PromptItem(
        record_id=str(extra.get("record_id", "")),
        prompt_ids=item.batch["prompts"],
        gold=item.non_tensor_batch["reward_model"]["ground_truth"],
        choices=tuple(extra.get("choices") or ()),
        answer_type=extra.get("answer_type") or None,
        question="",
        input_images=(),
        initial_state=None,  # the fidelity term (local engine only) reads it; see check_verl_settings
    )


def valid_response_ids(item: Any) -> torch.Tensor:
    """One DataProto item's response ids without right padding [N]."""
    response_ids = item.batch["responses"]  # [N_max]
    length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
    return response_ids[:length]


class OmniRewardManager(RewardManagerBase):
    """Per-rollout PeRPO reward on token ids (verl reward loop, one sample per call)."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.context = reward_context(config, tokenizer)

    def score(self, data: DataProto) -> Response:
        """Score the last item of ``data`` (verl's convention for multi-sequence outputs)."""
        item = data[-1:][0]
        context = self.context
        return score_responses(
            context.tokenizer, context.layout, [valid_response_ids(item)], [prompt_of(item)], [0], [0], context.scorer
        )[0]

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        response = await self.loop.run_in_executor(None, self.score, data)
        return {
            "reward_score": response.reward,
            "reward_extra_info": {
                "acc": response.accuracy,
                "format": response.format,
                "perception": response.perception,
                "has_image": float(response.has_image),
            },
        }
