"""Tiny omni model: Anole-like vocabulary, save → load_omni round trip, tokenizer hash."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_for_tests

from omni_r1.model.layout import BOI_TOKEN, EOI_TOKEN, LayoutError
from omni_r1.model.loading import VQ_DECODER_FILE, load_omni
from omni_r1.model.tiny import image_token_name, save_tiny, tokenizer_hash


def tiny_cfg(cfg, model_dir):
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"source": "tiny", "local_dir": str(model_dir), "dtype": "float32"}),
        "run": cfg.run.model_copy(update={"device": "cpu"}),
    })


@pytest.fixture(scope="module")
def omni():
    return build_tiny_for_tests(seed=0)


def test_vocabulary_is_laid_out_like_anole(omni):
    tokenizer, layout = omni.tokenizer, omni.layout
    k = layout.num_codes
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tokenizer.convert_ids_to_tokens([4, 4 + 12, 4 + k - 1]) == [image_token_name(0), "IMGIMGBCZ", image_token_name(k - 1)]
    assert (layout.eoi_id, layout.boi_id) == (4 + k, 5 + k)
    assert tokenizer.convert_ids_to_tokens([layout.eoi_id, layout.boi_id]) == [EOI_TOKEN, BOI_TOKEN]
    assert omni.model.config.vocabulary_map["<image>"] == omni.model.config.image_token_id
    assert len(tokenizer) == omni.model.config.vocab_size
    text = "THOUGHT 1: zoom in. Final Answer: red"
    ids = tokenizer(text).input_ids
    assert ids[0] == layout.bos_id and not any(4 <= i < 4 + k for i in ids)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_save_then_load_omni_gives_identical_model(omni, cfg, tmp_path):
    save_tiny(omni, tmp_path / "tiny")
    assert (tmp_path / "tiny" / VQ_DECODER_FILE).is_file()
    loaded = load_omni(tiny_cfg(cfg, tmp_path / "tiny"))
    assert loaded.layout == omni.layout
    ids = torch.tensor([[0, 5, 9, omni.layout.boi_id, 4, 7, omni.layout.eoi_id, 80, 2]])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, omni.model(ids).logits)
    text = "Think with images first. <image> Final Answer: B"
    assert loaded.tokenizer(text).input_ids == omni.tokenizer(text).input_ids
    latent = torch.randn(1, omni.model.config.vq_config.latent_channels, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded.vq_decoder(latent), omni.vq_decoder(latent))


def test_missing_tiny_model_and_broken_layout_fail_loudly(omni, cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_omni(tiny_cfg(cfg, tmp_path / "absent"))
    broken = build_tiny_for_tests(seed=0)
    vocabulary = dict(broken.model.config.vocabulary_map)
    vocabulary[image_token_name(0)], vocabulary[image_token_name(1)] = 5, 4
    broken.model.config.vocabulary_map = vocabulary
    save_tiny(broken, tmp_path / "broken")
    with pytest.raises(LayoutError, match="broken"):
        load_omni(tiny_cfg(cfg, tmp_path / "broken"))


def test_tokenizer_hash_follows_encoder_and_codebook_weights(omni, tmp_path):
    save_tiny(omni, tmp_path / "a")
    save_tiny(build_tiny_for_tests(seed=0), tmp_path / "b")
    assert tokenizer_hash(tmp_path / "a") == tokenizer_hash(tmp_path / "b")
    other = build_tiny_for_tests(seed=0)
    with torch.no_grad():
        other.model.lm_head.weight.add_(1.0)  # not part of the image tokenizer
    save_tiny(other, tmp_path / "c")
    assert tokenizer_hash(tmp_path / "c") == tokenizer_hash(tmp_path / "a")
    with torch.no_grad():
        other.model.model.vqmodel.quantize.embedding.weight[0, 0] += 1.0
    save_tiny(other, tmp_path / "d")
    assert tokenizer_hash(tmp_path / "d") != tokenizer_hash(tmp_path / "a")
