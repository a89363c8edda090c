"""Omni-R1 as an lmms-eval model (``--model omni_r1``), for the general benchmarks of Table 3.

lmms-eval (https://github.com/EvolvingLMMs-Lab/lmms-eval) is optional: its release on the
package index requires a torch other than the project's, so it is not a dependency. When
``lmms_eval`` is importable this module defines :class:`OmniR1Lmms`, a "simple" lmms-eval model
(subclass of ``lmms_eval.api.model.lmms``, registered as ``omni_r1``), so that

    python -m lmms_eval --model omni_r1 --model_args params=params.yaml,model_dir=checkpoints/omni_r1/perpo/step_60 \\
        --tasks mme,pope,mmvp,blink,vstar_bench,mmvet

runs the harness's own tasks and metrics (POPE F1, MME-P/R, ...). Each request's visuals and
context become one message for :class:`omni_r1.eval.vlmevalkit.OmniR1VLM`, which answers with
the model's final answer (protocol: ``eval.*`` of the params file). Log-likelihood requests are
not supported (the Table 3 benchmarks are generative).
"""

from __future__ import annotations

from typing import Any

try:  # optional: lmms-eval pins its own torch
    from lmms_eval.api.model import lmms as _LmmsBase
    from lmms_eval.api.registry import register_model
except ImportError:  # pragma: no cover - depends on the environment
    _LmmsBase = None


def request_message(visuals: list[Any], context: str) -> list[dict[str, Any]]:
    """lmms-eval's (visuals, context) → a harness message: images first, then the text."""
    return [*({"type": "image", "value": image} for image in visuals if image is not None),
            {"type": "text", "value": context}]  # fmt: skip


if _LmmsBase is not None:  # pragma: no cover - exercised only where lmms-eval is installed

    @register_model("omni_r1")
    class OmniR1Lmms(_LmmsBase):
        """lmms-eval ``simple`` model over :class:`omni_r1.eval.vlmevalkit.OmniR1VLM`."""

        def __init__(self, params: str = "params.yaml", model_dir: str | None = None, **kwargs: Any) -> None:
            super().__init__()
            from omni_r1.eval.vlmevalkit import OmniR1VLM

            self.adapter = OmniR1VLM.from_params(params, model_dir)

        def generate_until(self, requests: list[Any]) -> list[str]:
            answers = []
            for request in requests:
                context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                visuals = doc_to_visual(self.task_dict[task][split][doc_id])
                answers.append(self.adapter.generate(request_message(list(visuals or []), context), dataset=task))
            return answers

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            raise NotImplementedError("omni_r1: the Table 3 benchmarks are generative; no log-likelihood tasks")

        def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
            raise NotImplementedError("omni_r1: multi-round generation is not supported")
