"""A tiny random Chameleon with Anole's token names, its tokenizer and TokenLayout.

Vocabulary (ids): ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, image tokens
``IMGIMG<letters>Z`` 4 .. 4+K-1 (codebook index = id - 4, digits written as letters A..J as
Chameleon's vocabulary mapping expects), ``<eoss>`` (EOI), ``<racm3:break>`` (BOI), the four
template reserved tokens, then the 256 byte-level characters (no merges, so any text
round-trips through encode/decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    ChameleonConfig,
    ChameleonForConditionalGeneration,
    ChameleonVQVAEConfig,
    PreTrainedTokenizerFast,
)

from omni_r1.model.layout import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    BOI_TOKEN,
    EOI_TOKEN,
    REASONING_CLOSE,
    REASONING_OPEN,
    TokenLayout,
)
from omni_r1.model.tiny import HEAD_TOKENS, image_token_name

NUM_CODES = 64
# The tiny model's control block without its ``<image>`` placeholder token: sampled text here
# must only show an image slot where a generated image is.
CONTROL_TOKENS = [EOI_TOKEN, BOI_TOKEN, REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE]


@dataclass
class TinyChameleon:
    model: ChameleonForConditionalGeneration
    tokenizer: PreTrainedTokenizerFast
    layout: TokenLayout


def build_tiny_tokenizer(num_codes: int = NUM_CODES) -> PreTrainedTokenizerFast:
    names = HEAD_TOKENS + [image_token_name(c) for c in range(num_codes)] + CONTROL_TOKENS
    names += sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    vocab = {name: index for index, name in enumerate(names)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(HEAD_TOKENS + CONTROL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def build_tiny_chameleon(seed: int = 0, num_codes: int = NUM_CODES, hidden: int = 32) -> TinyChameleon:
    """Random 2-layer Chameleon, 32x32 VQ resolution with a 4x4 grid (16 tokens per image)."""
    tokenizer = build_tiny_tokenizer(num_codes)
    vq_config = ChameleonVQVAEConfig(
        embed_dim=8,
        num_embeddings=num_codes,
        latent_channels=32,
        resolution=32,
        base_channels=32,
        channel_multiplier=[1, 1, 2, 2],  # downsample 8 -> 4x4 grid
        num_res_blocks=1,
        attn_resolutions=[],
    )
    config = ChameleonConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        vq_config=vq_config,
        vocabulary_map=tokenizer.get_vocab(),
    )
    torch.manual_seed(seed)
    model = ChameleonForConditionalGeneration(config).eval()
    return TinyChameleon(model, tokenizer, TokenLayout.from_model(config, tokenizer))


@pytest.fixture
def tiny_chameleon() -> TinyChameleon:
    return build_tiny_chameleon()


@pytest.fixture(scope="module")
def shared_tiny_chameleon() -> TinyChameleon:
    """One model per module, for tests that only read it (e.g. property tests with hypothesis)."""
    return build_tiny_chameleon(seed=1)

