"""TokenLayout: where text, image and template tokens live in the omni model's vocabulary.

Anole-7B (a Chameleon checkpoint) lays its vocabulary out as: BOS/pad/EOS = 0/1/2, 8192 image
tokens 4..8195 (codebook index = id - 4), EOI ``<eoss>`` = 8196, BOI ``<racm3:break>`` = 8197,
``<reservedN>`` = N + 4. The tiny default model reuses the same token *names* with fewer codes
and a smaller grid. Every component receives a TokenLayout; no id is written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BOI_TOKEN = "<racm3:break>"
EOI_TOKEN = "<eoss>"
IMAGE_TOKEN_PREFIX = "IMGIMG"
# Official "templated" mode wraps reasoning and answer in these reserved tokens (REFERENCE §3).
REASONING_OPEN, REASONING_CLOSE = "<reserved12856>", "<reserved12857>"
ANSWER_OPEN, ANSWER_CLOSE = "<reserved12866>", "<reserved12867>"


class LayoutError(ValueError):
    """The model and tokenizer do not agree with the layout the method needs."""


@dataclass(frozen=True)
class TokenLayout:
    bos_id: int
    pad_id: int
    eos_id: int
    boi_id: int
    eoi_id: int
    image_token_start: int  # id of codebook index 0
    num_codes: int  # codebook size K; image ids are [start, start + K)
    grid_h: int
    grid_w: int
    image_size: int  # pixels per side
    reasoning_open_id: int
    reasoning_close_id: int
    answer_open_id: int
    answer_close_id: int
    vocab_size: int

    @property
    def tokens_per_image(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def image_token_end(self) -> int:
        """One past the last image token id."""
        return self.image_token_start + self.num_codes

    def is_image_token(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.image_token_start) & (ids < self.image_token_end)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        return codes + self.image_token_start

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return ids - self.image_token_start

    @classmethod
    def from_model(cls, config: Any, tokenizer: Any) -> TokenLayout:
        """Read the layout from a ChameleonConfig and its tokenizer, verifying it.

        Raises:
            LayoutError: image tokens are not one contiguous block whose codebook index is
                ``id - start`` (``vocabulary_mapping.bpe2img[t] == t - offset``), a special
                token is missing, or the grid does not match the VQ config.
        """
        from transformers.models.chameleon.modeling_chameleon import (
            ChameleonImageVocabularyMapping,
        )

        vocab_map = config.vocabulary_map or {}
        mapping = ChameleonImageVocabularyMapping(vocab_map)
        image_ids = mapping.image_tokens
        if not image_ids:
            raise LayoutError("config.vocabulary_map has no IMGIMG image tokens")
        start, count = image_ids[0], len(image_ids)
        if image_ids != list(range(start, start + count)):
            raise LayoutError("image token ids are not one contiguous block")
        wrong = [t for t, code in mapping.bpe2img.items() if code != t - start]
        if wrong:
            raise LayoutError(
                f"bpe2img[{wrong[0]}] = {mapping.bpe2img[wrong[0]]}, expected {wrong[0] - start}: "
                "codebook index must equal token id - offset"
            )
        vq = config.vq_config
        if vq.num_embeddings != count:
            raise LayoutError(f"vq_config.num_embeddings={vq.num_embeddings} but {count} image tokens")
        downsample = 2 ** (len(vq.channel_multiplier) - 1)
        grid = vq.resolution // downsample

        def token_id(name: str) -> int:
            value = tokenizer.convert_tokens_to_ids(name)
            if value is None or value == tokenizer.unk_token_id:
                raise LayoutError(f"tokenizer has no {name!r} token")
            return int(value)

        for image_id in (start, start + count - 1):  # tokenizer and config.vocabulary_map agree
            name = mapping.val2name[image_id]
            if token_id(name) != image_id:
                raise LayoutError(
                    f"tokenizer maps {name!r} to {token_id(name)}, config.vocabulary_map to {image_id}"
                )

        return cls(
            bos_id=int(config.bos_token_id),
            pad_id=int(config.pad_token_id),
            eos_id=int(config.eos_token_id),
            boi_id=token_id(BOI_TOKEN),
            eoi_id=token_id(EOI_TOKEN),
            image_token_start=start,
            num_codes=count,
            grid_h=grid,
            grid_w=grid,
            image_size=vq.resolution,
            reasoning_open_id=token_id(REASONING_OPEN),
            reasoning_close_id=token_id(REASONING_CLOSE),
            answer_open_id=token_id(ANSWER_OPEN),
            answer_close_id=token_id(ANSWER_CLOSE),
            vocab_size=int(config.vocab_size),
        )
