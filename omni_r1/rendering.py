"""The rendering tool: executor-drawn images inserted at BOI (the study's rendered regime).

In the rendered regime the model writes an action and BOI; the tool reads the response so
far, runs the executor on its current visual state (:func:`omni_r1.rewards.fidelity.tool_rendering`,
the state logic the fidelity scorer replays, paper Appendix A: v_t = Exec(a_t, v_{t-1})),
encodes the image with the policy's VQ tokenizer and returns its codes, which the interleave
processor (:class:`omni_r1.model.generation.InterleavedLogitsProcessor`) inserts as context.
One tool for the PeRPO rollouts (:mod:`omni_r1.training.rollout`) and the evaluation
(:mod:`omni_r1.eval.evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from omni_r1.config import Config
from omni_r1.executor import Executor
from omni_r1.model.generation import ImageTool, decode_interleaved
from omni_r1.model.layout import TokenLayout
from omni_r1.rewards.fidelity import Encode, tool_rendering, visual_codec
from omni_r1.trajectory import IMAGE_SLOT


@dataclass(frozen=True)
class ImageRenderer:
    """The rendered regime's tool: executor on the visual state, then the VQ encoder.

    Args:
        executor: renders v_t = Exec(a_t, v_{t-1}) (paper Appendix A).
        encode: images → codes [M, H*W] with the policy's VQ tokenizer
            (:func:`omni_r1.rewards.fidelity.visual_codec`).
        tokenizer, layout: the policy's, to read the response written so far.
    """

    executor: Executor
    encode: Encode
    tokenizer: Any
    layout: TokenLayout

    def tool(self, starts: Sequence[tuple[Image.Image | None, object | None]]) -> ImageTool:
        """The :data:`ImageTool` of a generate call whose row ``r`` starts from ``starts[r]``.

        ``starts[r]``: v_0 (the first input image, or None) and the task state of row r's prompt.
        """

        def draw(rows: Sequence[int], generated: Sequence[torch.Tensor]) -> torch.Tensor:
            images = []
            for row, ids in zip(rows, generated, strict=True):
                text, _ = decode_interleaved(self.tokenizer, self.layout, ids)
                image, _ = tool_rendering(text + IMAGE_SLOT, *starts[row], self.executor)
                images.append(image)
            return self.encode(images)  # [rows, H*W]

        return draw



def image_renderer(cfg: Config, policy: Any, tokenizer: Any, layout: TokenLayout) -> ImageRenderer:
    """The :class:`ImageRenderer` of a policy: ``cfg.executor`` and the policy's frozen VQ encoder."""
    codec = visual_codec(policy.model.vqmodel, None, cfg.fidelity.batch_size)
    return ImageRenderer(Executor(cfg.executor), codec.encode, tokenizer, layout)
