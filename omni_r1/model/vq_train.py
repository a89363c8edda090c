"""Training of the tiny VQ autoencoder (encoder + codebook + decoder) on a list of images.

Loss (VQ-VAE, van den Oord et al. 2017), per batch of pixels x in [-1, 1]:
    z = quant_conv(encoder(x)),  c = argmin_k ||z - e_k||²,  z_q = z + sg[e_c - z]  (straight-through)
    L = ||x - decoder(post_quant_conv(z_q))||² + ||sg[z] - e_c||² + β ||z - sg[e_c]||²
The codebook starts from encoder outputs of the first batch, and every ``restart_every`` steps
codes unused since the last restart are re-seeded from random encoder outputs (dead-code
restart), so most of the K codes end up in use. The modules are the real HF ``ChameleonVQVAE``
(encoder, ``quantize.embedding``, ``quant_conv``, ``post_quant_conv``) and ``VQDecoder``; after
training they drop straight into the tiny Chameleon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

from omni_r1.model.vq import VQDecoder


@dataclass(frozen=True)
class VQLoss:
    total: torch.Tensor
    reconstruction: torch.Tensor
    codebook: torch.Tensor
    commitment: torch.Tensor


@dataclass(frozen=True)
class VQTrainSettings:
    steps: int
    batch_size: int
    lr: float
    commitment_beta: float
    restart_every: int
    crop_size: int  # side of the random grid-aligned crops trained on; the full size disables cropping
    seed: int


def quantize(vqmodel: ChameleonVQVAE, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook vector per position.

    Args:
        latent: ``[B, D, h, w]`` output of ``quant_conv``.

    Returns:
        ``(vectors [B, D, h, w], indices [B*h*w])`` with gradients only to the codebook.
    """
    codebook = vqmodel.quantize.embedding.weight  # [K, D]
    flat = latent.permute(0, 2, 3, 1).reshape(-1, codebook.shape[1])  # [B*h*w, D]
    distances = torch.cdist(flat.detach(), codebook.detach())  # [B*h*w, K]
    indices = distances.argmin(dim=1)  # [B*h*w]
    batch, dim, height, width = latent.shape
    vectors = codebook[indices].view(batch, height, width, dim).permute(0, 3, 1, 2)  # [B, D, h, w]
    return vectors, indices


def encode_latent(vqmodel: ChameleonVQVAE, pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, S, S]`` pixels → ``[B, D, h, w]`` pre-quantisation latent."""
    return vqmodel.quant_conv(vqmodel.encoder(pixels))


def vq_loss(
    vqmodel: ChameleonVQVAE, decoder: VQDecoder, pixels: torch.Tensor, beta: float
) -> tuple[VQLoss, torch.Tensor]:
    """VQ-VAE loss of one batch (module docstring); also returns the code indices ``[B*h*w]``."""
    latent = encode_latent(vqmodel, pixels)  # [B, D, h, w]
    vectors, indices = quantize(vqmodel, latent)  # [B, D, h, w]
    codebook_term = F.mse_loss(vectors, latent.detach())
    commitment_term = F.mse_loss(latent, vectors.detach())
    straight_through = latent + (vectors - latent).detach()  # [B, D, h, w]
    reconstruction = decoder(vqmodel.post_quant_conv(straight_through))  # [B, 3, S, S]
    reconstruction_term = F.mse_loss(reconstruction, pixels)
    total = reconstruction_term + codebook_term + beta * commitment_term
    return VQLoss(total, reconstruction_term, codebook_term, commitment_term), indices


@torch.no_grad()
def reconstruct(vqmodel: ChameleonVQVAE, decoder: VQDecoder, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode, quantise and decode: ``(reconstruction [B, 3, S, S], indices [B, h*w])``."""
    latent = encode_latent(vqmodel, pixels)  # [B, D, h, w]
    vectors, indices = quantize(vqmodel, latent)
    reconstruction = decoder(vqmodel.post_quant_conv(vectors))  # [B, 3, S, S]
    return reconstruction, indices.view(pixels.shape[0], -1)


def psnr(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of pixels in [-1, 1], measured on the [0, 1] scale: ``[B]``."""
    error = ((reconstruction.clamp(-1, 1) - original) / 2.0) ** 2  # [B, 3, S, S]
    mse = error.flatten(1).mean(dim=1).clamp_min(1e-10)  # [B]
    return 10.0 * torch.log10(1.0 / mse)


SCORE_CHUNK = 64  # images per forward pass in evaluate_vq: bounds memory only, scores do not depend on it


@torch.no_grad()
def evaluate_vq(
    vqmodel: ChameleonVQVAE, decoder: VQDecoder, pixels: torch.Tensor, batch_size: int = SCORE_CHUNK
) -> dict[str, float]:
    """Mean PSNR (dB) and the share of codebook entries used on ``pixels`` ``[N, 3, S, S]``."""
    scores, used = [], torch.zeros(vqmodel.quantize.num_embeddings, dtype=torch.bool)
    for start in range(0, pixels.shape[0], batch_size):
        batch = pixels[start : start + batch_size]
        reconstruction, indices = reconstruct(vqmodel, decoder, batch)
        scores.append(psnr(batch, reconstruction))
        used[indices.flatten().cpu()] = True
    return {"psnr": float(torch.cat(scores).mean()), "codebook_usage": float(used.float().mean())}


@torch.no_grad()
def restart_codes(vqmodel: ChameleonVQVAE, dead: torch.Tensor, latent: torch.Tensor, generator: torch.Generator) -> int:
    """Re-seed the codes flagged in ``dead`` ``[K]`` from random rows of ``latent`` ``[B, D, h, w]``."""
    count = int(dead.sum())
    if count == 0:
        return 0
    flat = latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1])  # [B*h*w, D]
    rows = torch.randint(0, flat.shape[0], (count,), generator=generator)
    vqmodel.quantize.embedding.weight[dead] = flat[rows]
    return count


def random_crops(
    pixels: torch.Tensor, count: int, crop_size: int, stride: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random images of ``pixels`` ``[N, 3, S, S]``, each cropped to ``crop_size`` at an
    offset that is a multiple of ``stride`` (the VQ downsampling), so crop codes align with the grid."""
    indices = torch.randint(0, pixels.shape[0], (count,), generator=generator)
    size = pixels.shape[-1]
    if crop_size >= size:
        return pixels[indices]
    offsets = torch.randint(0, (size - crop_size) // stride + 1, (count, 2), generator=generator) * stride
    crops = [pixels[i, :, y : y + crop_size, x : x + crop_size] for i, (y, x) in zip(indices.tolist(), offsets.tolist(), strict=True)]
    return torch.stack(crops).contiguous(memory_format=torch.channels_last)  # [count, 3, c, c]


def train_vq(
    vqmodel: ChameleonVQVAE,
    decoder: VQDecoder,
    pixels: torch.Tensor,
    settings: VQTrainSettings,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train encoder, codebook and decoder in place on ``pixels`` ``[N, 3, S, S]``.

    Args:
        vqmodel: the HF VQ model whose encoder/codebook/convs are trained.
        decoder: its decoder.
        pixels: training images, preprocessed to [-1, 1].
        settings: steps, batch size, Adam lr (cosine-decayed), β, restart period, crop size
            (convolutions make training on grid-aligned crops valid and several times cheaper), seed.
        on_step: called after every step with ``(step, {"loss", "reconstruction", ...})``.

    Returns:
        The per-step loss records (``step`` from 1).
    """
    generator = torch.Generator().manual_seed(settings.seed)
    stride = 2 ** (len(vqmodel.config.channel_multiplier) - 1)
    modules = [vqmodel.encoder, vqmodel.quant_conv, vqmodel.quantize, vqmodel.post_quant_conv, decoder]
    parameters = [p for module in modules for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / settings.steps))
    )
    vqmodel.train(), decoder.train()
    for module in modules:  # NHWC convolutions are ~2x faster on CPU
        module.to(memory_format=torch.channels_last)
    pixels = pixels.contiguous(memory_format=torch.channels_last)  # [N, 3, S, S]
    with torch.no_grad():  # codebook starts on encoder outputs
        first = pixels[torch.randint(0, pixels.shape[0], (settings.batch_size,), generator=generator)]
        restart_codes(vqmodel, torch.ones(vqmodel.quantize.num_embeddings, dtype=torch.bool),
                      encode_latent(vqmodel, first), generator)
    usage = torch.zeros(vqmodel.quantize.num_embeddings, dtype=torch.long)
    history: list[dict[str, float]] = []
    for step in range(1, settings.steps + 1):
        batch = random_crops(pixels, settings.batch_size, settings.crop_size, stride, generator)
        loss, indices = vq_loss(vqmodel, decoder, batch, settings.commitment_beta)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        schedule.step()
        usage += torch.bincount(indices.cpu(), minlength=usage.shape[0])
        record = {"step": step, "loss": loss.total.item(), "reconstruction": loss.reconstruction.item(),
                  "codebook": loss.codebook.item(), "commitment": loss.commitment.item(),
                  "lr": schedule.get_last_lr()[0]}
        if step % settings.restart_every == 0 and step < settings.steps:
            with torch.no_grad():
                record["restarted_codes"] = restart_codes(vqmodel, usage == 0, encode_latent(vqmodel, batch), generator)
            usage.zero_()
        history.append(record)
        if on_step is not None:
            on_step(step, record)
    vqmodel.eval(), decoder.eval()
    for module in modules:
        module.to(memory_format=torch.contiguous_format)
    for parameter in parameters:
        parameter.requires_grad_(False)
    return history
