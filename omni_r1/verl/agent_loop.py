"""verl agent loop for interleaved rollouts: the local engine's prompt ids in, response ids out.

verl 0.9.1's single-turn loop tokenises chat messages with a template and an image
processor. :class:`OmniAgentLoop` sends the ``prompt_ids`` that
:class:`omni_r1.verl.dataset.OmniRLHFDataset` packed (BOS, question with input-image codes,
instruction: the local engine's prompt) to the rollout server unchanged, and asks the vLLM
plugin's interleave grammar for the request (``SamplingParams.extra_args``, image cap
``omni_r1.max_images_per_answer``). The response is truncated to
``rollout.response_length``, as verl's own loop does.

Registered by name in the YAML that ``actor_rollout_ref.rollout.agent.agent_loop_config_path``
points to (written by :mod:`omni_r1.verl.launch`).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput

from omni_r1.verl.settings import AGENT_LOOP_NAME
from omni_r1.verl.vllm_plugin import EXTRA_ARG

AGENT_LOOP_TARGET = "omni_r1.verl.agent_loop.OmniAgentLoop"


def agent_loop_entries() -> list[dict[str, str]]:
    """The content of the agent-loop YAML: our loop's name and class."""
    return [{"name": AGENT_LOOP_NAME, "_target_": AGENT_LOOP_TARGET}]


def interleaved_sampling(sampling_params: dict[str, Any], max_images: int) -> dict[str, Any]:
    """verl's sampling parameters plus the request's opt-in to the interleave grammar."""
    extra_args = dict(sampling_params.get("extra_args") or {})
    extra_args[EXTRA_ARG] = max_images
    return {**sampling_params, "extra_args": extra_args}


class OmniAgentLoop(AgentLoopBase):
    """One rollout per prompt from pre-packed token ids (images as codebook tokens)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_length = self.rollout_config.response_length
        self.max_images = int(self.config.omni_r1.max_images_per_answer)

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs) -> AgentLoopOutput:
        prompt_ids = [int(token) for token in kwargs["prompt_ids"]]
        output = await self.server_manager.generate(
            request_id=uuid4().hex,
            prompt_ids=prompt_ids,
            sampling_params=interleaved_sampling(sampling_params, self.max_images),
            priority=int(priority),
        )
        response_ids = list(output.token_ids[: self.response_length])
        logprobs = list(output.log_probs[: self.response_length]) if output.log_probs else None
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=[1] * len(response_ids),
            response_logprobs=logprobs,
            multi_modal_data={},
            num_turns=2,
            metrics={},
        )
