"""Pre-training the tiny base on image <-> text pairs, and scoring what it draws.

The paper's base is Anole, which already generates images; the tiny default's analogue is
trained here on the pairs of :mod:`omni_r1.data.base_pairs` (describe, draw, apply an
action). Training is PeSFT's code path with the ``base`` section's budget: pairs are packed by
:func:`omni_r1.model.packing.pack_many` (loss on the assistant turn only: description text, or
the step text, BOI, H·W codes, EOI), optimised by :class:`omni_r1.training.pesft.PesftTrainer`
with the same objective L_CE + λ·L_pe (paper §4.1; the perception section's λ and alignment),
and the ``pesft`` section's scheduler, clipping, precision and strategy.

Drawing quality on held-out ``draw`` and ``action`` pairs: the prompt and step text up to the
image's BOI is the prefix, the model generates exactly H·W codes greedily
(:func:`omni_r1.training.bootstrap.generate_step_images`), and each drawing is scored by

- code accuracy: the share of generated codes equal to the target image's codes
  (:func:`omni_r1.rewards.fidelity.code_agreement`);
- PSNR (dB, capped at ``fidelity.psnr_cap_db``) of the decoded drawing against the
  renderer's image itself (:func:`omni_r1.rewards.fidelity.psnr`), whose ceiling is the
  VQ's own reconstruction PSNR of that image (reported beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from omni_r1.config import BaseConfig, PesftConfig
from omni_r1.data.base_pairs import BasePair
from omni_r1.model.images import preprocess_images
from omni_r1.model.layout import TokenLayout
from omni_r1.model.packing import PackedSequence, pack_many, pack_trajectory
from omni_r1.rewards.fidelity import code_agreement, psnr
from omni_r1.training.bootstrap import generate_step_images

Encode = Callable[[Sequence[Any]], torch.Tensor]  # PIL images -> codes [N, H*W]
DecodePixels = Callable[[torch.Tensor], torch.Tensor]  # codes [N, H*W] -> pixels [N, 3, S, S] in [-1, 1]


def pair_codes(pairs: Sequence[BasePair], encode: Encode) -> list[list[torch.Tensor]]:
    """Codes [H*W] of every pair's images, in packing order, from one encoding pass."""
    flat = [image for pair in pairs for image in pair.images]
    codes = encode(flat) if flat else torch.empty(0, 0, dtype=torch.long)  # [N, H*W]
    out, start = [], 0
    for pair in pairs:
        out.append(list(codes[start : start + len(pair.images)]))
        start += len(pair.images)
    return out


def pack_pairs(
    pairs: Sequence[BasePair], codes: Sequence[list[torch.Tensor]], layout: TokenLayout, tokenizer: Any, max_length: int
) -> tuple[list[PackedSequence], int]:
    """Packed training sequences of the pairs and how many were too long (dropped)."""
    return pack_many([pair.trajectory for pair in pairs], layout, tokenizer, codes, max_length)


def base_training_section(pesft: PesftConfig, base: BaseConfig) -> PesftConfig:
    """The PeSFT recipe with the base's budget: steps, batch, learning rate, warm-up."""
    return pesft.model_copy(update={
        "max_steps": base.max_steps,
        "per_device_batch_size": base.per_device_batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": base.learning_rate,
        "warmup_steps": base.warmup_steps,
    })  # fmt: skip


def draw_prefix(pair: BasePair, codes: list[torch.Tensor], layout: TokenLayout, tokenizer: Any, max_length: int) -> torch.Tensor:
    """Ids [P] of a drawing pair up to and including the BOI of its target image.

    Raises:
        ValueError: the pair draws nothing, or does not fit ``max_length``.
    """
    if not pair.draws:
        raise ValueError(f"{pair.id}: a {pair.kind} pair has no image to draw")
    packed = pack_trajectory(pair.trajectory, layout, tokenizer, codes, max_length)
    if packed is None:
        raise ValueError(f"{pair.id}: longer than packing.max_length={max_length}")
    return packed.input_ids[: packed.image_spans[-1].start]  # [P], ends with BOI


@torch.no_grad()
def greedy_drawings(model: Any, layout: TokenLayout, prefixes: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Greedy H·W codes after each prefix: [N, H*W]."""
    model.eval()
    drawn: list[torch.Tensor] = []
    for start in range(0, len(prefixes), batch_size):
        drawn += generate_step_images(model, layout, prefixes[start : start + batch_size], sampling={"do_sample": False})
    return torch.stack(drawn) if drawn else torch.empty(0, layout.tokens_per_image, dtype=torch.long)


@dataclass(frozen=True)
class DrawingScores:
    code_accuracy: torch.Tensor  # [N] share of codes equal to the target's
    psnr_db: torch.Tensor  # [N] decoded drawing vs the renderer's image, capped


def score_drawings(
    generated: torch.Tensor,
    target: torch.Tensor,
    generated_pixels: torch.Tensor,
    reference_pixels: torch.Tensor,
    cap_db: float,
) -> DrawingScores:
    """Code accuracy and PSNR of drawings.

    Args:
        generated, target: codes [N, H*W].
        generated_pixels: the decoded drawings [N, 3, S, S] in [-1, 1].
        reference_pixels: the renderer's images [N, 3, S, S] in [-1, 1].
        cap_db: PSNR of equal images and the most any drawing scores.
    """
    if generated.shape != target.shape or generated_pixels.shape != reference_pixels.shape:
        raise ValueError(
            f"shapes differ: codes {tuple(generated.shape)} vs {tuple(target.shape)}, "
            f"pixels {tuple(generated_pixels.shape)} vs {tuple(reference_pixels.shape)}"
        )
    return DrawingScores(code_agreement(generated, target), psnr(generated_pixels, reference_pixels, cap_db))


def mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else float("nan")


@dataclass
class HeldOutDrawings:
    """Targets of the held-out drawing pairs, prepared once for every model scored on them."""

    pairs: list[BasePair]
    prefixes: list[torch.Tensor]  # [P_i] each, ending with BOI
    target: torch.Tensor  # [N, H*W]
    reference_pixels: torch.Tensor  # [N, 3, S, S] the renderer's images in [-1, 1]


def held_out_drawings(
    pairs: Sequence[BasePair], codes: Sequence[list[torch.Tensor]], layout: TokenLayout, tokenizer: Any,
    max_length: int, resolution: int,
) -> HeldOutDrawings:  # fmt: skip
    """The drawing pairs among ``pairs`` with their prefixes, target codes and rendered pixels."""
    chosen = [(pair, pair_codes) for pair, pair_codes in zip(pairs, codes, strict=True) if pair.draws]
    return HeldOutDrawings(
        pairs=[pair for pair, _ in chosen],
        prefixes=[draw_prefix(pair, c, layout, tokenizer, max_length) for pair, c in chosen],
        target=torch.stack([c[-1] for _, c in chosen]).long(),
        reference_pixels=preprocess_images([pair.images[-1] for pair, _ in chosen], resolution),
    )


def drawing_metrics(
    model: Any, layout: TokenLayout, held_out: HeldOutDrawings, decode: DecodePixels, *, batch_size: int, cap_db: float
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean code accuracy and PSNR per pair kind and overall, and the drawn codes [N, H*W]."""
    generated = greedy_drawings(model, layout, held_out.prefixes, batch_size)  # [N, H*W]
    scores = score_drawings(generated, held_out.target, decode(generated), held_out.reference_pixels, cap_db)
    kinds = [pair.kind for pair in held_out.pairs]
    metrics = {"code_accuracy": mean(scores.code_accuracy), "psnr_db": mean(scores.psnr_db)}
    for kind in dict.fromkeys(kinds):
        rows = torch.tensor([k == kind for k in kinds])
        metrics[f"{kind}_code_accuracy"] = mean(scores.code_accuracy[rows])
        metrics[f"{kind}_psnr_db"] = mean(scores.psnr_db[rows])
    return metrics, generated


def reconstruction_psnr(held_out: HeldOutDrawings, decode: DecodePixels, cap_db: float) -> float:
    """Mean PSNR of the target codes decoded against the renderer's images: the VQ's ceiling."""
    return mean(psnr(decode(held_out.target), held_out.reference_pixels, cap_db))
