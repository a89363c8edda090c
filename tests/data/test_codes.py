"""Encoded image cache: codes from a tiny real Chameleon VQ encoder, keyed by tokenizer hash."""

from __future__ import annotations

import pytest
import torch
from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

from omni_r1.data import synthetic
from omni_r1.data.codes import cache_key, encode_dataset, image_items, read_codes
from omni_r1.data.records import from_png
from omni_r1.data.storage import write_records
from omni_r1.model.images import encode_images


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(0)
    config = ChameleonVQVAEConfig(embed_dim=8, num_embeddings=32, latent_channels=16, resolution=32,
                                  base_channels=32, channel_multiplier=[1, 2], num_res_blocks=1)
    return ChameleonVQVAE(config).eval()


class CountingEncoder:
    def __init__(self, vq):
        self.vq, self.images = vq, 0

    def __call__(self, images):
        self.images += len(images)
        return encode_images(self.vq, images)  # [N, H*W]


def test_codes_cached_per_image_and_re_encoded_on_new_tokenizer(cfg, tmp_path, vq):
    records = list(synthetic.generate("train", 1, cfg))
    write_records(records, tmp_path / "prepared" / "ds", shard_size=cfg.data.shard_size)
    dataset, out = tmp_path / "prepared" / "ds", tmp_path / "encoded" / "ds"
    encoder = CountingEncoder(vq)
    first = encode_dataset(dataset, out, encoder, cache_key(dataset, "tok-a"), batch_size=3)
    expected = [(r.id, key) for r in records for key, _ in image_items(r)]
    assert not first["cached"] and first["images"] == len(expected) == encoder.images
    codes = read_codes(out)
    assert list(codes) == expected
    grid = 32 // 2  # one halving
    record = records[3]
    for key, png in image_items(record):
        direct = encode_images(vq, [from_png(png)])[0]
        assert codes[(record.id, key)].shape == (grid * grid,)
        assert torch.equal(codes[(record.id, key)], direct)
        assert int(codes[(record.id, key)].max()) < 32
    again = encode_dataset(dataset, out, encoder, cache_key(dataset, "tok-a"))
    assert again["cached"] and encoder.images == len(expected)
    encode_dataset(dataset, out, encoder, cache_key(dataset, "tok-b"))
    assert encoder.images == 2 * len(expected)
    write_records(records[:2], dataset, shard_size=cfg.data.shard_size)  # new data, same tokenizer
    encode_dataset(dataset, out, encoder, cache_key(dataset, "tok-b"))
    assert len(read_codes(out)) == sum(1 for r in records[:2] for _ in image_items(r))
