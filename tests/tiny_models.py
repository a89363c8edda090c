"""The tiny omni model the tests build: random weights, 32 px images, a 4x4 grid, 64 codes.

Same vocabulary layout and loading surface as the pipeline's tiny model
(:mod:`omni_r1.model.tiny`); builds in well under a second.
"""

from __future__ import annotations

from omni_r1.config import TinyModelConfig
from omni_r1.model.loading import OmniModel
from omni_r1.model.tiny import assemble_tiny, fresh_vq, tiny_vq_config, train_text_tokenizer

TEST_TINY = TinyModelConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
    intermediate_size=64, max_position_embeddings=512, image_size=32, vq_base_channels=32,
    vq_channel_multiplier=[1, 1, 2, 2], vq_num_res_blocks=1, vq_latent_channels=32,
    num_codes=64, embed_dim=8, text_vocab_size=320,
)
TEST_CORPUS = [
    "THOUGHT 1: zoom into the top left region. ZOOM(0.1, 0.2, 0.3, 0.4)",
    "THOUGHT 2: the red square is the smallest shape. Final Answer: red",
    "Think with images first. The answer is B.",
]


def build_tiny_for_tests(seed: int) -> OmniModel:
    """A random (untrained) tiny omni model for tests: 32 px images, 4x4 grid, 64 codes.

    Same vocabulary layout and loading surface as the pipeline's tiny model; builds in well
    under a second.
    """
    tokenizer = train_text_tokenizer(TEST_CORPUS, TEST_TINY.num_codes, TEST_TINY.text_vocab_size, 1)
    vqmodel, decoder = fresh_vq(tiny_vq_config(TEST_TINY), seed)
    return assemble_tiny(TEST_TINY, tokenizer, vqmodel, decoder, seed)
