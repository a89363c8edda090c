"""VQGAN decoder for Chameleon/Anole image tokens.

Upstream ``transformers`` ships the VQ encoder and codebook (``ChameleonVQVAE``) but no decoder,
so generated image tokens cannot become pixels. ``VQDecoder`` is the taming-transformers decoder
that Chameleon's VQGAN uses, built from the same ``ChameleonVQVAEConfig`` fields, with parameter
names that match the ``decoder.*`` part of Anole's VQGAN checkpoint.

Key mapping for real checkpoints (``load_decoder_state`` accepts any of them):

| source | decoder keys |
|---|---|
| Anole/Chameleon ``tokenizer/vqgan.ckpt`` (Lightning) | ``state_dict`` → ``decoder.<name>`` |
| forks that merge the decoder into the HF model | ``model.vqmodel.decoder.<name>`` |
| ``vq_decoder.safetensors`` written by ``save_omni`` | ``<name>`` |

``<name>`` is e.g. ``conv_in.weight``, ``mid.block_1.norm1.weight``, ``mid.attn_1.q.weight``,
``up.4.block.0.conv1.weight``, ``up.3.block.0.nin_shortcut.weight``, ``up.4.upsample.conv.weight``,
``norm_out.weight``, ``conv_out.weight``. ``up.0`` is the full-resolution level, as in taming
(levels are built lowest-resolution first and prepended). The ``post_quant_conv`` that maps codebook
vectors to the decoder input is part of the HF ``ChameleonVQVAE`` and is loaded with the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import ChameleonVQVAEConfig
from transformers.models.chameleon.modeling_chameleon import (
    ChameleonVQVAEEncoderAttnBlock,
    ChameleonVQVAEEncoderResnetBlock,
)

DECODER_PREFIXES = ("model.vqmodel.decoder.", "vqmodel.decoder.", "decoder.")


class VQDecoderUpsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (taming ``Upsample`` with ``resamp_with_conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = F.interpolate(hidden, scale_factor=2.0, mode="nearest")  # [B, C, 2H, 2W]
        return self.conv(hidden)


class VQDecoder(nn.Module):
    """Latent ``[B, latent_channels, h, w]`` → pixels ``[B, in_channels, h*2^(L-1), w*2^(L-1)]``.

    Mirrors ``ChameleonVQVAEEncoder``: channel multipliers reversed, ``num_res_blocks + 1`` resnet
    blocks per level, attention at ``attn_resolutions``, output roughly in [-1, 1].
    """

    def __init__(self, config: ChameleonVQVAEConfig):
        super().__init__()
        self.config = config
        multipliers = tuple(config.channel_multiplier)
        self.num_resolutions = len(multipliers)
        self.num_res_blocks = config.num_res_blocks
        attn_resolutions = config.attn_resolutions or []
        use_attention = config.attn_type == "vanilla"

        block_in = config.base_channels * multipliers[-1]
        current_res = config.resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(config.latent_channels, block_in, kernel_size=3, padding=1)

        self.mid = nn.Module()
        self.mid.block_1 = ChameleonVQVAEEncoderResnetBlock(config, block_in, block_in)
        self.mid.attn_1 = ChameleonVQVAEEncoderAttnBlock(block_in) if use_attention else nn.Identity()
        self.mid.block_2 = ChameleonVQVAEEncoderResnetBlock(config, block_in, block_in)

        levels: list[nn.Module] = []
        for level in reversed(range(self.num_resolutions)):
            blocks, attentions = nn.ModuleList(), nn.ModuleList()
            block_out = config.base_channels * multipliers[level]
            for _ in range(self.num_res_blocks + 1):
                blocks.append(ChameleonVQVAEEncoderResnetBlock(config, block_in, block_out))
                block_in = block_out
                if use_attention and current_res in attn_resolutions:
                    attentions.append(ChameleonVQVAEEncoderAttnBlock(block_in))
            up = nn.Module()
            up.block = blocks
            up.attn = attentions
            if level != 0:
                up.upsample = VQDecoderUpsample(block_in)
                current_res *= 2
            levels.insert(0, up)
        self.up = nn.ModuleList(levels)

        self.norm_out = nn.GroupNorm(num_groups=32, num_channels=block_in, eps=1e-6, affine=True)
        self.conv_out = nn.Conv2d(block_in, config.in_channels, kernel_size=3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        hidden = self.conv_in(latent)  # [B, C_top, h, w]
        hidden = self.mid.block_1(hidden)
        hidden = self.mid.attn_1(hidden)
        hidden = self.mid.block_2(hidden)
        for level in reversed(range(self.num_resolutions)):
            up = self.up[level]
            for index, block in enumerate(up.block):
                hidden = block(hidden)
                if len(up.attn) > 0:
                    hidden = up.attn[index](hidden)
            if level != 0:
                hidden = up.upsample(hidden)  # [B, C, 2h, 2w]
        hidden = self.norm_out(hidden)
        hidden = hidden * torch.sigmoid(hidden)
        return self.conv_out(hidden)  # [B, 3, H, W]


def load_decoder_state(path_or_state: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read VQ decoder weights and strip their prefix so ``VQDecoder.load_state_dict`` takes them.

    Args:
        path_or_state: a state dict, or a file: ``.safetensors``, or a torch checkpoint
            (``.ckpt``/``.pt``/``.bin``; a Lightning checkpoint's ``state_dict`` entry is used).
            Keys may carry ``decoder.``, ``vqmodel.decoder.`` or ``model.vqmodel.decoder.``;
            when any key does, keys without it (encoder, codebook, loss) are dropped.

    Returns:
        ``{name: tensor}`` with names relative to the decoder (``conv_in.weight``, ...).

    Raises:
        ValueError: the file holds no tensors.
    """
    state = _read_state(path_or_state)
    for prefix in DECODER_PREFIXES:
        selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if selected:
            return selected
    if not state:
        raise ValueError(f"{path_or_state}: no decoder tensors found")
    return dict(state)


def _read_state(path_or_state: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(path_or_state, Mapping):
        state = dict(path_or_state)
    else:
        path = Path(path_or_state)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = dict(state["state_dict"])
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def build_decoder(config: ChameleonVQVAEConfig, state: Mapping[str, torch.Tensor] | None = None) -> VQDecoder:
    """A ``VQDecoder`` for ``config``, loaded strictly from ``state`` when given."""
    decoder = VQDecoder(config)
    if state is not None:
        decoder.load_state_dict(load_decoder_state(state), strict=True)
    return decoder.eval()
