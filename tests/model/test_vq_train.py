"""Tiny VQ autoencoder training and the tiny model built around it."""

from __future__ import annotations

import torch
from tiny_models import TEST_TINY

from omni_r1.config import TokenizerConfig
from omni_r1.data import synthetic
from omni_r1.data.records import from_png
from omni_r1.model.images import encode_images, preprocess_images
from omni_r1.model.tiny import fresh_vq, tiny_vq_config, train_tiny
from omni_r1.model.vq_train import VQTrainSettings, evaluate_vq, psnr, random_crops, train_vq


def synthetic_images(cfg, count: int) -> list:
    """Input and step images of the synthetic Uni-Task records (64 px)."""
    images = []
    for record in synthetic.generate("train", 2, cfg):
        images += [from_png(png) for png in record.input_images]
        images += [from_png(step.image) for step in record.steps if step.image]
    return images[:count]


def test_psnr_of_known_error():
    original = torch.zeros(1, 3, 4, 4)
    # error 0.2 on the [-1, 1] scale = 0.1 on [0, 1]: MSE 0.01 -> 20 dB
    assert abs(float(psnr(original, original + 0.2)[0]) - 20.0) < 1e-4


def test_random_crops_are_grid_aligned():
    pixels = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16).expand(2, 3, 16, 16)
    crops = random_crops(pixels, 8, crop_size=8, stride=4, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (8, 3, 8, 8)
    for crop in crops:
        image, offset = divmod(int(crop[0, 0, 0]), 16 * 16)
        y, x = divmod(offset, 16)
        assert y % 4 == 0 and x % 4 == 0
        assert torch.equal(crop, pixels[image, :, y : y + 8, x : x + 8])


def test_short_training_lowers_reconstruction_loss(cfg):
    pixels = preprocess_images(synthetic_images(cfg, 12), 32)  # [12, 3, 32, 32]
    vqmodel, decoder = fresh_vq(tiny_vq_config(TEST_TINY), seed=0)
    before = evaluate_vq(vqmodel, decoder, pixels)["psnr"]
    settings = VQTrainSettings(steps=30, batch_size=8, lr=3e-3, commitment_beta=0.25, restart_every=10,
                               crop_size=32, seed=0)
    history = train_vq(vqmodel, decoder, pixels, settings)
    first = sum(r["reconstruction"] for r in history[:5]) / 5
    last = sum(r["reconstruction"] for r in history[-5:]) / 5
    assert last < first
    assert evaluate_vq(vqmodel, decoder, pixels)["psnr"] > before
    assert any(r.get("restarted_codes", 0) > 0 for r in history)


def test_train_tiny_puts_the_trained_vq_inside_the_model(cfg):
    params = TokenizerConfig(**{**cfg.tokenizer.model_dump(), "vq_steps": 3, "vq_batch_size": 4,
                                "psnr_samples": 2, "sample_grid": 2, "heldout_fraction": 0.25})
    images = synthetic_images(cfg, 8)
    texts = ["THOUGHT 1: zoom into the box.", "Final Answer: red square"] * 4
    result = train_tiny(images, texts, TEST_TINY, params, seed=0)
    assert set(result.metrics) >= {"psnr", "codebook_usage", "train_steps"}
    assert result.metrics["train_steps"] == 3 and len(result.history) == 3
    assert result.metrics["heldout_images"] == 2 and len(result.samples) == 2
    assert result.samples[0][1].size == (TEST_TINY.image_size, TEST_TINY.image_size)
    codes = encode_images(result.omni, images)
    assert codes.shape == (8, result.omni.layout.tokens_per_image)
    tokens = result.omni.tokenizer("Final Answer: red square", add_special_tokens=False).input_ids
    assert len(tokens) < len("Final Answer: red square")  # BPE merges learned from the texts
