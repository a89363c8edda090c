"""Images ↔ codebook indices ↔ image-token ids.

Preprocessing follows ``ChameleonImageProcessor``: RGB (transparency blended onto white),
shortest edge resized to the model's resolution with LANCZOS, centre crop, then
``pixel * 0.0078 - 1`` (rescale factor 0.0078, mean 1, std 1), i.e. roughly [-1, 1].
Decoding inverts it the way Chameleon's image tokenizer does: clamp to [-1, 1], map to [0, 255].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from transformers import ChameleonForConditionalGeneration
from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

from omni_r1.model.layout import TokenLayout
from omni_r1.model.vq import VQDecoder

if TYPE_CHECKING:
    from omni_r1.model.loading import OmniModel

RESCALE_FACTOR = 0.0078  # ChameleonImageProcessor.rescale_factor
IMAGE_MEAN = 1.0  # ChameleonImageProcessor.image_mean (every channel)
IMAGE_STD = 1.0  # ChameleonImageProcessor.image_std (every channel)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``; a transparent layer is blended onto white (as Chameleon does)."""
    if image.mode == "RGB":
        return image
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[:, :, 3:4] / 255.0
    if (alpha >= 1.0).all():
        return image.convert("RGB")
    blended = (1.0 - alpha) * 255.0 + alpha * rgba[:, :, :3]
    return Image.fromarray(blended.astype(np.uint8), "RGB")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Shortest edge to ``size`` (LANCZOS), then a centred ``size x size`` crop."""
    width, height = image.size
    if (width, height) != (size, size):
        short, long = min(width, height), max(width, height)
        new_long = int(size * long / short)
        new_size = (size, new_long) if width <= height else (new_long, size)
        image = image.resize(new_size, resample=Image.Resampling.LANCZOS)
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def preprocess_images(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images → pixel tensor ``[N, 3, size, size]`` in Chameleon's [-1, 1] range."""
    arrays = [np.asarray(resize_and_crop(to_rgb(im), size), dtype=np.float32) for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # [N, 3, S, S]
    return (pixels * RESCALE_FACTOR - IMAGE_MEAN) / IMAGE_STD


def pixels_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """Pixel tensor ``[N, 3, H, W]`` in [-1, 1] → RGB PIL images."""
    unit = ((pixels.detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0).cpu()  # [N, 3, H, W]
    arrays = (unit.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()  # [N, H, W, 3]
    return [Image.fromarray(array, "RGB") for array in arrays]


def _vqmodel(omni_or_model: OmniModel | ChameleonForConditionalGeneration | ChameleonVQVAE) -> ChameleonVQVAE:
    if isinstance(omni_or_model, ChameleonVQVAE):
        return omni_or_model
    model = getattr(omni_or_model, "model", omni_or_model)  # OmniModel → HF model
    if isinstance(model, ChameleonForConditionalGeneration):
        return model.model.vqmodel
    raise TypeError(f"expected OmniModel, ChameleonForConditionalGeneration or ChameleonVQVAE, got {type(omni_or_model).__name__}")


@torch.no_grad()
def encode_images(
    omni_or_model: OmniModel | ChameleonForConditionalGeneration | ChameleonVQVAE,
    images: Sequence[Image.Image],
    images_per_pass: int = 16,
) -> torch.LongTensor:
    """Codebook indices of ``images`` from the model's VQ encoder.

    Args:
        omni_or_model: anything holding the Chameleon VQ model.
        images: PIL images of any size and mode (resized and cropped to the VQ resolution).
        images_per_pass: images encoded per forward pass (memory only; the codes do not depend on it).

    Returns:
        ``[N, H*W]`` codebook indices on CPU, row-major over the H x W grid.
    """
    vqmodel = _vqmodel(omni_or_model)
    parameter = next(vqmodel.parameters())
    codes: list[torch.Tensor] = []
    for start in range(0, len(images), images_per_pass):
        pixels = preprocess_images(images[start : start + images_per_pass], vqmodel.config.resolution)
        pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)  # [b, 3, S, S]
        indices = vqmodel.encode(pixels, return_dict=True).image_tokens  # [b*H*W]
        codes.append(indices.view(pixels.shape[0], -1).cpu())  # [b, H*W]
    if not codes:
        return torch.empty(0, 0, dtype=torch.long)
    return torch.cat(codes).long()


@torch.no_grad()
def decode_codes(
    decoder: VQDecoder,
    vqmodel: ChameleonVQVAE,
    codes: torch.Tensor,
    images_per_pass: int = 16,
) -> list[Image.Image]:
    """Codebook indices ``[N, H*W]`` → PIL images (codebook lookup, post-quant conv, decoder).

    Args:
        decoder: the VQ decoder matching ``vqmodel``'s config.
        vqmodel: holds the codebook (``quantize.embedding``) and ``post_quant_conv``.
        codes: ``[N, H*W]`` indices in ``[0, num_embeddings)`` with a square grid.
        images_per_pass: images decoded per forward pass (memory only).
    """
    grid = int(round(codes.shape[-1] ** 0.5))
    if grid * grid != codes.shape[-1]:
        raise ValueError(f"decode_codes: {codes.shape[-1]} codes per image is not a square grid")
    parameter = next(decoder.parameters())
    images: list[Image.Image] = []
    for start in range(0, codes.shape[0], images_per_pass):
        batch = codes[start : start + images_per_pass].to(vqmodel.quantize.embedding.weight.device)
        vectors = vqmodel.quantize.embedding(batch)  # [b, H*W, D]
        latent = vectors.view(batch.shape[0], grid, grid, -1).permute(0, 3, 1, 2)  # [b, D, H, W]
        latent = vqmodel.post_quant_conv(latent)  # [b, C_latent, H, W]
        pixels = decoder(latent.to(device=parameter.device, dtype=parameter.dtype))  # [b, 3, S, S]
        images.extend(pixels_to_images(pixels))
    return images


def decode_images(omni: OmniModel, codes: torch.Tensor) -> list[Image.Image]:
    """``decode_codes`` with the decoder and VQ model held by ``omni``."""
    if omni.vq_decoder is None:
        raise ValueError("this model has no VQ decoder: set model.vq_decoder_path to Anole's vqgan.ckpt")
    return decode_codes(omni.vq_decoder, omni.model.model.vqmodel, codes)


def codes_to_token_ids(codes: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Codebook indices → image-token ids (``id = start + code``, verified at load)."""
    if codes.numel() and (codes.min() < 0 or codes.max() >= layout.num_codes):
        raise ValueError(f"codes outside [0, {layout.num_codes}): min {codes.min()}, max {codes.max()}")
    return layout.codes_to_ids(codes)


def token_ids_to_codes(ids: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Image-token ids → codebook indices; any non-image id is an error."""
    if not bool(layout.is_image_token(ids).all()):
        raise ValueError("token_ids_to_codes: ids outside the image-token block")
    return layout.ids_to_codes(ids)
