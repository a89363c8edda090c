"""TokenLayout on an Anole-shaped vocabulary, and loud failures on broken ones."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models
from transformers import ChameleonConfig, ChameleonVQVAEConfig, PreTrainedTokenizerFast

from omni_r1.model.layout import BOI_TOKEN, LayoutError, TokenLayout
from omni_r1.model.tiny import image_token_name, train_text_tokenizer

ANOLE_CODES = 8192


@pytest.fixture(scope="module")
def anole_tokenizer():
    return train_text_tokenizer(["a small corpus"], ANOLE_CODES, text_vocab_size=32, min_frequency=1)


def anole_config(vocabulary_map: dict[str, int], **vq_overrides) -> ChameleonConfig:
    """Anole's VQ shape (ChameleonVQVAEConfig defaults: 8192 codes, 512 px, 5 levels)."""
    return ChameleonConfig(
        vocab_size=len(vocabulary_map), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        vq_config=ChameleonVQVAEConfig(**vq_overrides), vocabulary_map=vocabulary_map,
    )


def test_anole_shaped_layout_is_read(anole_tokenizer):
    layout = TokenLayout.from_model(anole_config(anole_tokenizer.get_vocab()), anole_tokenizer)
    # REFERENCE §2: image ids 4..8195, EOI 8196, BOI 8197, 512 px -> 32x32 grid.
    assert (layout.image_token_start, layout.num_codes, layout.image_token_end) == (4, 8192, 8196)
    assert (layout.eoi_id, layout.boi_id) == (8196, 8197)
    assert (layout.grid_h, layout.grid_w, layout.tokens_per_image, layout.image_size) == (32, 32, 1024, 512)
    assert (layout.bos_id, layout.pad_id, layout.eos_id) == (0, 1, 2)
    assert anole_tokenizer.convert_ids_to_tokens(4 + 1234) == image_token_name(1234) == "IMGIMGBCDEZ"


def test_swapped_image_names_fail_loudly(anole_tokenizer):
    vocabulary = dict(anole_tokenizer.get_vocab())
    first, second = image_token_name(0), image_token_name(7)
    vocabulary[first], vocabulary[second] = vocabulary[second], vocabulary[first]
    with pytest.raises(LayoutError, match="codebook index"):
        TokenLayout.from_model(anole_config(vocabulary), anole_tokenizer)


def test_gap_in_image_block_fails_loudly(anole_tokenizer):
    vocabulary = dict(anole_tokenizer.get_vocab())
    vocabulary[image_token_name(100)] = 60000  # moved out of the contiguous block
    with pytest.raises(LayoutError, match="contiguous"):
        TokenLayout.from_model(anole_config(vocabulary), anole_tokenizer)


def test_codebook_size_mismatch_fails_loudly(anole_tokenizer):
    with pytest.raises(LayoutError, match="num_embeddings"):
        TokenLayout.from_model(anole_config(anole_tokenizer.get_vocab(), num_embeddings=4096), anole_tokenizer)


def test_missing_boi_token_fails_loudly(anole_tokenizer):
    vocabulary = {n: i for n, i in anole_tokenizer.get_vocab().items() if n != BOI_TOKEN}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(LayoutError, match="racm3:break"):
        TokenLayout.from_model(anole_config(anole_tokenizer.get_vocab()), tokenizer)
