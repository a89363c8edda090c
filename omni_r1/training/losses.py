"""PeSFT losses (paper §4.1): next-token cross-entropy plus the perception loss.

    L = L_CE + λ·L_pe,   L_pe = (1/|Ω|) Σ_{t∈Ω} ||W·h − E[c_t]||² / D

Ω is the set of label positions holding a generated image token (prompt images carry label
−100 and are excluded), c_t the codebook index of that token, E the frozen VQ codebook
[K, D], W a linear map hidden → D. The division by D makes L_pe the element-wise MSE the
official code computes (``nn.MSELoss``).

Alignment of h with c_t (params.yaml ``perception.alignment``):

- ``next_token`` (default): the hidden state that *predicts* token t, h_{t−1}, is pulled
  towards E[c_t] — the same shift as the cross-entropy, where logits at t−1 score label t.
- ``same_position`` (official code): h_t, the state that has already read token t.

Both losses accept ``num_items_in_batch``: the count over the whole accumulated batch, so
a sum over micro-batches divided by it equals the loss of one big batch (HF Trainer passes
it to ``compute_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omni_r1.model.layout import TokenLayout

IGNORE_INDEX = -100


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy over labelled (assistant) tokens.

    L_CE, paper §4.1.

    Args:
        logits: [B, L, V]; logits at position t score the label at t + 1.
        labels: [B, L] token ids, −100 where no loss is taken (prompt, padding).
        num_items_in_batch: normaliser (labelled tokens in the whole accumulated batch);
            None → the labelled tokens of this batch.

    Returns:
        Scalar: Σ −log p(label) / normaliser (0 when nothing is labelled).
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()  # [B*(L-1), V]
    shifted_labels = labels[:, 1:].reshape(-1).to(logits.device)  # [B*(L-1)]
    total = F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (shifted_labels != IGNORE_INDEX).sum()
    if isinstance(count, torch.Tensor):
        count = count.to(total.device)
    return total / count if int(count) > 0 else total * 0.0


def image_label_targets(labels: torch.Tensor, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the labels hold image tokens, and their codebook indices.

    The c_t of L_pe, paper §4.1.

    Args:
        labels: [B, L] labels (−100 on prompt and padding, so prompt images never count).

    Returns:
        (image_label_mask [B, L] bool, image_target_codes [B, L] long, 0 off the mask).
    """
    mask = layout.is_image_token(labels)  # [B, L]
    codes = torch.where(mask, layout.ids_to_codes(labels), torch.zeros_like(labels))  # [B, L]
    return mask, codes


def _aligned(
    hidden: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, alignment: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if alignment == "next_token":
        return hidden[:, :-1], mask[:, 1:], codes[:, 1:]
    if alignment == "same_position":
        return hidden, mask, codes
    raise KeyError(f"unknown perception alignment {alignment!r}; known: next_token, same_position")


def perception_loss(
    hidden: torch.Tensor,
    projection: torch.nn.Module,
    codebook: torch.Tensor,
    image_label_mask: torch.Tensor,
    image_target_codes: torch.Tensor,
    *,
    alignment: str,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """L_pe: mean over image label positions of ||W·h − E[c]||² / D (paper §4.1).

    Args:
        hidden: [B, L, Dh] final-layer hidden states.
        projection: W, a module mapping Dh → D (``nn.Linear``).
        codebook: [K, D] frozen E (no gradient flows into it).
        image_label_mask: [B, L] True where the label is a generated image token.
        image_target_codes: [B, L] codebook index of that token.
        alignment: ``"next_token"`` (h_{t−1} vs E[c_t]) or ``"same_position"`` (h_t vs E[c_t]).
        num_items_in_batch: image positions in the whole accumulated batch; None → this batch.

    Returns:
        Scalar, 0 (connected to the graph, never NaN) when there is no image position.
    """
    states, mask, codes = _aligned(hidden, image_label_mask, image_target_codes, alignment)
    selected = states[mask]  # [M, Dh]
    predicted = projection(selected.to(codebook.dtype))  # [M, D]
    target = codebook.detach()[codes[mask]]  # [M, D]
    squared = (predicted - target).square().sum() / codebook.shape[1]  # Σ_t ||·||² / D
    count = num_items_in_batch if num_items_in_batch is not None else selected.shape[0]
    return squared / max(int(count), 1)


@dataclass(frozen=True)
class PesftLoss:
    total: torch.Tensor  # L_CE + λ·L_pe
    cross_entropy: torch.Tensor
    perception: torch.Tensor


def pesft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    hidden: torch.Tensor,
    projection: torch.nn.Module,
    codebook: torch.Tensor,
    layout: TokenLayout,
    *,
    perception_weight: float,
    alignment: str,
    num_items_in_batch: int | torch.Tensor | None = None,
    num_image_items_in_batch: int | torch.Tensor | None = None,
) -> PesftLoss:
    """PeSFT objective L = L_CE + λ·L_pe (paper §4.1), both parts returned.

    Args:
        logits: [B, L, V]; labels: [B, L]; hidden: [B, L, Dh].
        projection, codebook: W and frozen E (see :func:`perception_loss`).
        layout: token layout (which label ids are image tokens).
        perception_weight: λ.
        alignment: see :func:`perception_loss`.
        num_items_in_batch, num_image_items_in_batch: accumulation normalisers.
    """
    ce = cross_entropy_loss(logits, labels, num_items_in_batch)
    mask, codes = image_label_targets(labels, layout)
    pe = perception_loss(
        hidden, projection, codebook, mask, codes,
        alignment=alignment, num_items_in_batch=num_image_items_in_batch,
    )  # fmt: skip
    return PesftLoss(total=ce + perception_weight * pe.to(ce.dtype), cross_entropy=ce, perception=pe)
