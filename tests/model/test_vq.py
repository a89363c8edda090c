"""VQDecoder: Anole VQGAN parameter names and shapes, checkpoint key mapping, output size."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import ChameleonVQVAEConfig

from omni_r1.model.vq import VQDecoder, build_decoder, load_decoder_state

# Anole's VQGAN (ChameleonVQVAEConfig defaults): ch 128, ch_mult [1,1,2,2,4], 2 res blocks,
# z 256 channels. Hand-listed decoder keys of its vqgan.ckpt (taming layout; up.4 = lowest res).
ANOLE_DECODER_SHAPES = {
    "conv_in.weight": (512, 256, 3, 3),
    "mid.block_1.norm1.weight": (512,),
    "mid.attn_1.q.weight": (512, 512, 1, 1),
    "mid.attn_1.proj_out.bias": (512,),
    "mid.block_2.conv2.weight": (512, 512, 3, 3),
    "up.4.block.0.conv1.weight": (512, 512, 3, 3),
    "up.4.block.2.conv2.weight": (512, 512, 3, 3),
    "up.4.upsample.conv.weight": (512, 512, 3, 3),
    "up.3.block.0.conv1.weight": (256, 512, 3, 3),
    "up.3.block.0.nin_shortcut.weight": (256, 512, 1, 1),
    "up.1.block.0.nin_shortcut.weight": (128, 256, 1, 1),
    "up.1.upsample.conv.weight": (128, 128, 3, 3),
    "up.0.block.2.conv2.weight": (128, 128, 3, 3),
    "norm_out.weight": (128,),
    "conv_out.weight": (3, 128, 3, 3),
    "conv_out.bias": (3,),
}


def test_decoder_loads_anole_shaped_state_strictly():
    with torch.device("meta"):
        decoder = VQDecoder(ChameleonVQVAEConfig())
        expected = {name: tuple(t.shape) for name, t in decoder.state_dict().items()}
        for name, shape in ANOLE_DECODER_SHAPES.items():
            assert expected[name] == shape, name
        assert not any(name.startswith("up.0.upsample") for name in expected)  # full resolution
        checkpoint = {f"decoder.{name}": torch.empty(shape) for name, shape in expected.items()}
        checkpoint["encoder.conv_in.weight"] = torch.empty(128, 3, 3, 3)
        checkpoint["quantize.embedding.weight"] = torch.empty(8192, 256)
        state = load_decoder_state({"state_dict": checkpoint})
        assert set(state) == set(expected)
        decoder.load_state_dict(state, strict=True, assign=True)
        wrong = dict(state, **{"conv_in.weight": torch.empty(512, 128, 3, 3)})
        with pytest.raises(RuntimeError, match="size mismatch"):
            VQDecoder(ChameleonVQVAEConfig()).load_state_dict(wrong, strict=True)


SMALL = ChameleonVQVAEConfig(embed_dim=8, num_embeddings=16, latent_channels=16, resolution=32,
                             base_channels=32, channel_multiplier=[1, 2, 2], num_res_blocks=1)


@pytest.mark.parametrize("prefix", ["decoder.", "model.vqmodel.decoder.", ""])
@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_checkpoint_files_load_with_or_without_prefix(tmp_path, prefix, suffix):
    torch.manual_seed(0)
    source = VQDecoder(SMALL).eval()
    state = {f"{prefix}{k}": v.clone() for k, v in source.state_dict().items()}
    if prefix:
        state[f"{prefix.replace('decoder.', 'encoder.')}conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / f"vq{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": state, "global_step": 3}, path)
    else:
        save_file(state, str(path))
    loaded = build_decoder(SMALL, load_decoder_state(path))
    latent = torch.randn(2, 16, 8, 8)
    assert torch.equal(loaded(latent), source(latent))


def test_decoder_upsamples_grid_to_resolution():
    decoder = VQDecoder(SMALL)
    pixels = decoder(torch.randn(3, SMALL.latent_channels, 8, 8))  # 2 halvings: 8x8 -> 32x32
    assert pixels.shape == (3, 3, 32, 32)
