"""Interleaved-grammar overhead: HF generate with vs without InterleavedLogitsProcessor.

A small random Chameleon on CPU (hidden 128, 2 layers, 1024 codes, 8×8 grid = 64 tokens per
image, vocabulary ~2.1K) with image logits enabled in both runs; batch 8, 128 new tokens
exactly (``min_new_tokens = max_new_tokens``, so both runs do the same number of forward
passes), sampling at T=1 with a fixed seed, one torch thread. Each variant runs several
times, alternating, and the best time of each is compared. The processor's own cost per
step is reported beside it.

Goal: constrained/unconstrained ≤ 1.05.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from transformers import (
    ChameleonConfig,
    ChameleonForConditionalGeneration,
    ChameleonVQVAEConfig,
    LogitsProcessorList,
)

from omni_r1.model.generation import InterleavedLogitsProcessor
from omni_r1.model.layout import TokenLayout
from omni_r1.model.logits import with_image_logits
from omni_r1.model.tiny import special_tokens

NUM_CODES, TEXT_TOKENS, BATCH, PROMPT, NEW_TOKENS, REPEATS = 1024, 1024, 8, 16, 128, 5
# The tiny model's special block (head, image tokens, EOI, BOI, templates, <image>), then text words.
VOCABULARY = special_tokens(NUM_CODES) + [f"text{i}" for i in range(TEXT_TOKENS)]


def small_model() -> tuple[ChameleonForConditionalGeneration, TokenLayout]:
    vq = ChameleonVQVAEConfig(
        embed_dim=8, num_embeddings=NUM_CODES, latent_channels=32, resolution=64,
        base_channels=32, channel_multiplier=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[],
    )  # fmt: skip
    config = ChameleonConfig(
        vocab_size=len(VOCABULARY), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, vq_config=vq,
        vocabulary_map={name: index for index, name in enumerate(VOCABULARY)},
    )  # fmt: skip
    torch.manual_seed(0)
    model = with_image_logits(ChameleonForConditionalGeneration(config).eval())
    start = 4
    layout = TokenLayout(
        bos_id=0, pad_id=1, eos_id=2, boi_id=start + NUM_CODES + 1, eoi_id=start + NUM_CODES,
        image_token_start=start, num_codes=NUM_CODES, grid_h=8, grid_w=8, image_size=64,
        reasoning_open_id=start + NUM_CODES + 2, reasoning_close_id=start + NUM_CODES + 3,
        answer_open_id=start + NUM_CODES + 4, answer_close_id=start + NUM_CODES + 5,
        vocab_size=len(VOCABULARY),
    )  # fmt: skip
    return model, layout


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, layout = small_model()
        generator = torch.Generator().manual_seed(0)
        first_text = layout.answer_close_id + 1
        input_ids = torch.randint(first_text, layout.vocab_size, (BATCH, PROMPT), generator=generator)
        attention_mask = torch.ones_like(input_ids)

        def generate(constrained: bool) -> torch.Tensor:
            processors = LogitsProcessorList()
            if constrained:
                processors.append(InterleavedLogitsProcessor(layout, BATCH, max_new_tokens=NEW_TOKENS))
            torch.manual_seed(0)
            with torch.no_grad():
                return model.generate(
                    input_ids=input_ids, attention_mask=attention_mask, do_sample=True,
                    temperature=1.0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                    logits_processor=processors, pad_token_id=layout.pad_id, eos_token_id=layout.eos_id,
                )  # fmt: skip

        assert generate(True).shape == generate(False).shape == (BATCH, PROMPT + NEW_TOKENS)
        plain, constrained = [], []
        for _ in range(REPEATS):
            plain.append(timed(lambda: generate(False)))
            constrained.append(timed(lambda: generate(True)))

        processor = InterleavedLogitsProcessor(layout, BATCH)
        ids = torch.randint(first_text, layout.vocab_size, (BATCH, PROMPT + NEW_TOKENS), generator=generator)
        scores = torch.randn(BATCH, layout.vocab_size, generator=generator)
        processor(ids[:, :PROMPT], scores)
        per_step = min(
            timed(lambda: [processor(ids[:, : PROMPT + n], scores) for n in range(1, NEW_TOKENS)])
            for _ in range(REPEATS)
        ) / (NEW_TOKENS - 1)
    finally:
        torch.set_num_threads(threads)
    ratio = min(constrained) / min(plain)
    print(
        f"generation: constrained/unconstrained = {ratio:.2f}x (goal <= 1.05) "
        f"[batch {BATCH}, {NEW_TOKENS} new tokens, vocab {layout.vocab_size}, "
        f"unconstrained {min(plain) * 1e3:.0f} ms, constrained {min(constrained) * 1e3:.0f} ms, "
        f"processor {per_step * 1e6:.0f} us/step]"
    )


if __name__ == "__main__":
    main()
