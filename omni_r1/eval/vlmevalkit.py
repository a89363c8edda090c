"""A VLMEvalKit model adapter, for the paper's general benchmarks (MME, MM-Vet, V*, POPE, ...).

VLMEvalKit (https://github.com/open-compass/VLMEvalKit) is installed from its repository,
not PyPI (``pip install -e <clone>``); it is optional here. When ``vlmeval`` is importable
:class:`OmniR1VLM` subclasses its ``vlmeval.vlm.base.BaseModel``; otherwise it is a plain
class with the same interface, which is all VLMEvalKit calls:

- ``generate(message, dataset=None) -> str`` where ``message`` is a list of
  ``{"type": "image" | "text", "value": ...}`` dicts (an image value is a file path or a
  PIL image; a bare string is one text part);
- ``INTERLEAVE = True``: images and text may alternate.

To register it, add to VLMEvalKit's ``vlmeval/config.py``::

    from functools import partial
    from omni_r1.eval.vlmevalkit import OmniR1VLM
    supported_VLM["omni-r1"] = partial(OmniR1VLM.from_params, "params.yaml", "checkpoints/omni_r1/perpo/step_60")

A message becomes the project's prompt: its images are encoded to codebook tokens by the
model's VQ encoder and placed in the image slots before the question (the
:func:`omni_r1.trajectory.render_prompt` layout the model was trained on), its text parts are
joined with newlines into the question, and :func:`omni_r1.model.packing.pack_prompt` builds
the ids. The model then reasons with interleaved images; the returned string is the span after
``Final Answer:`` (the whole text, stripped, when there is none).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from omni_r1.config import GenerationConfig
from omni_r1.eval.evaluate import decoding_kwargs, generate_responses
from omni_r1.model.images import encode_images
from omni_r1.model.packing import pack_prompt
from omni_r1.rewards.accuracy import extract_final_answer
from omni_r1.trajectory import IMAGE_SLOT, Trajectory

try:  # optional: VLMEvalKit installs from its repository
    from vlmeval.vlm.base import BaseModel as _VLMEvalKitBase
except ImportError:  # pragma: no cover - depends on the environment
    _VLMEvalKitBase = object


def split_message(message: str | Sequence[dict[str, Any]]) -> tuple[list[Image.Image], str]:
    """VLMEvalKit message → (images in order, text parts joined by newlines).

    Raises:
        ValueError: a part whose type is neither ``image`` nor ``text`` (names its index).
    """
    if isinstance(message, str):
        return [], message.strip()
    images: list[Image.Image] = []
    texts: list[str] = []
    for index, part in enumerate(message):
        kind, value = part.get("type"), part.get("value")
        if kind == "image":
            image = value if isinstance(value, Image.Image) else Image.open(Path(value))
            images.append(image.convert("RGB"))
        elif kind == "text":
            texts.append(str(value).replace(IMAGE_SLOT, " ").strip())
        else:
            raise ValueError(f"message part {index}: type {kind!r} is neither 'image' nor 'text'")
    return images, "\n".join(text for text in texts if text)


class OmniR1VLM(_VLMEvalKitBase):
    """Omni-R1 as a VLMEvalKit model (see the module docstring)."""

    INTERLEAVE = True

    def __init__(self, omni: Any, generation: GenerationConfig, decoding: str, batch_size: int = 1):
        """Args:
        omni: the loaded model (``model``, ``tokenizer``, ``layout``).
        generation: budget, image cap and sampling settings (params.yaml ``generation``).
        decoding: ``greedy`` or ``sample``.
        """
        if _VLMEvalKitBase is not object:
            super().__init__()
        self.omni = omni
        self.generation = generation
        self.decoding = decoding
        self.batch_size = batch_size

    @classmethod
    def from_params(cls, params: str | Path, model_dir: str | Path | None = None) -> OmniR1VLM:
        """Load a checkpoint folder with the settings of a params file (``eval.decoding``)."""
        from omni_r1.config import load_config
        from omni_r1.model.loading import load_omni

        cfg = load_config(params)
        return cls(load_omni(cfg, model_dir=model_dir), cfg.generation, cfg.eval.decoding)

    def prompt_ids(self, message: str | Sequence[dict[str, Any]]) -> torch.Tensor:
        """Message → prompt ids [P] (images → codes → BOI/codes/EOI; texts → question)."""
        images, question = split_message(message)
        codes = encode_images(self.omni, images) if images else torch.empty(0, 0, dtype=torch.long)  # [n, H*W]
        trajectory = Trajectory(question=question, input_images=tuple(images), final_answer="")
        return pack_prompt(trajectory, self.omni.layout, self.omni.tokenizer, list(codes))

    def generate_inner(self, message: str | Sequence[dict[str, Any]], dataset: str | None = None) -> str:
        generation = generate_responses(
            self.omni, [self.prompt_ids(message)], decoding_kwargs(self.generation, self.decoding),
            self.generation.max_images_per_answer, self.batch_size,
        )[0]  # fmt: skip
        answer = extract_final_answer(generation.text)
        return answer if answer is not None else generation.text.replace(IMAGE_SLOT, " ").strip()

    def generate(self, message: str | Sequence[dict[str, Any]], dataset: str | None = None) -> str:
        """VLMEvalKit's entry point: the final answer string for one message."""
        return self.generate_inner(message, dataset)
