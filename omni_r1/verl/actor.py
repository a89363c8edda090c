"""The unmasked Chameleon for verl's actor and reference (``actor_rollout_ref.model.external_lib``).

verl loads a Chameleon checkpoint with ``AutoModelForImageTextToText`` (its config type is in
that auto mapping), whose upstream class sets every image-token logit to the dtype's
minimum: image-token log-probs would be ~-inf and the PPO ratio and KL of every generated
image meaningless. verl imports ``external_lib`` modules before it builds the model; importing
this one registers :class:`~omni_r1.model.logits.OmniChameleonForConditionalGeneration`
(same weights and names, image logits kept) for ``ChameleonConfig`` in the auto classes, so
actor and reference compute the log-probs of :func:`omni_r1.model.logprobs.token_logprobs`.
"""

from __future__ import annotations

from transformers import AutoModelForImageTextToText, ChameleonConfig

from omni_r1.model.logits import OmniChameleonForConditionalGeneration


def register_unmasked_chameleon() -> None:
    """Map ``ChameleonConfig`` to the unmasked class in ``AutoModelForImageTextToText`` (idempotent)."""
    AutoModelForImageTextToText.register(
        ChameleonConfig, OmniChameleonForConditionalGeneration, exist_ok=True
    )


register_unmasked_chameleon()
