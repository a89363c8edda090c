"""Image preprocessing, encode → codes → token ids, decode → PIL images."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny_models import build_tiny_for_tests
from transformers.models.chameleon.image_processing_pil_chameleon import ChameleonImageProcessorPil

from omni_r1.model.images import (
    codes_to_token_ids,
    decode_codes,
    decode_images,
    encode_images,
    preprocess_images,
    token_ids_to_codes,
)


def shape_images(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Random filled rectangles and ellipses on a flat background."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.randrange(size // 2), rng.randrange(size // 2)
            box = (x, y, x + rng.randint(4, size // 2), y + rng.randint(4, size // 2))
            fill = tuple(rng.randrange(256) for _ in range(3))
            (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=fill)
        images.append(image)
    return images


@pytest.fixture(scope="module")
def omni():
    return build_tiny_for_tests(seed=0)


def test_preprocessing_matches_chameleon_image_processor():
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 56, 4), dtype=np.uint8), "RGBA")
    images = [rgba, shape_images(1, 48)[0]]
    processor = ChameleonImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    expected = processor(images, return_tensors="pt")["pixel_values"]  # [2, 3, 32, 32]
    ours = preprocess_images(images, 32)
    assert ours.shape == expected.shape == (2, 3, 32, 32)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_encode_gives_codes_that_map_to_the_models_image_tokens(omni):
    images = shape_images(5, 40)
    codes = encode_images(omni, images, images_per_pass=2)  # [5, 16]
    layout = omni.layout
    assert codes.shape == (5, layout.tokens_per_image) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < layout.num_codes
    pixels = preprocess_images(images, layout.image_size)
    with torch.no_grad():
        upstream = omni.model.get_image_tokens(pixels)  # [5, 16] BPE ids via vocabulary mapping
    ids = codes_to_token_ids(codes, layout)
    assert torch.equal(ids, upstream)
    assert torch.equal(token_ids_to_codes(ids, layout), codes)
    assert bool(layout.is_image_token(ids).all())


def test_code_range_is_checked(omni):
    with pytest.raises(ValueError, match="outside"):
        codes_to_token_ids(torch.tensor([[omni.layout.num_codes]]), omni.layout)
    with pytest.raises(ValueError, match="image-token block"):
        token_ids_to_codes(torch.tensor([omni.layout.boi_id]), omni.layout)


def test_encode_then_decode_gives_images_of_model_size(omni):
    codes = encode_images(omni, shape_images(3, 64))
    images = decode_codes(omni.vq_decoder, omni.model.model.vqmodel, codes)
    size = omni.layout.image_size
    assert len(images) == 3 and all(im.size == (size, size) and im.mode == "RGB" for im in images)
    again = decode_images(omni, codes)
    assert [np.asarray(a).tolist() == np.asarray(b).tolist() for a, b in zip(images, again, strict=True)] == [True] * 3
    with pytest.raises(ValueError, match="square grid"):
        decode_codes(omni.vq_decoder, omni.model.model.vqmodel, codes[:, :15])
