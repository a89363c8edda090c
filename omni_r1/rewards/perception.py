"""Perception reward R_pe (paper §4.2, PeRPO): smoothness of generated images in codebook space.

For every COMPLETE generated image segment of a response — BOI, exactly H·W image tokens,
EOI, all inside the response mask — look up Z = E[c] reshaped H×W×D (E the frozen VQ
codebook [K, D]) and compute the total variation

    TV = ( mean_{i,j} ||Z[i,j+1] − Z[i,j]||² + mean_{i,j} ||Z[i+1,j] − Z[i,j]||² ) / D

then map it to a score with ``exp(−TV/τ)`` (paper) or ``1/(1+TV/τ)`` (official default,
"inv"), and aggregate the segments of one response with min (official default), mean,
max or median. A response with no complete segment has no perception term: its score is
NaN and ``has_image`` is False (the combined reward then drops the term).

Where this differs from the official code: segments must be exactly BOI + H·W image tokens
+ EOI in a row (the official reader also counts image tokens scattered between BOI and the
next BOI/EOI), and there is no 1-D fallback energy for incomplete segments — an incomplete
image earns no perception term.

The batch path is vectorised over all segments of the batch: segments are found with
tensor ops, codes gathered into [N, H·W], one embedding lookup (or one lookup in a
precomputed squared-distance table), one TV computation, one per-response reduction.
The plain per-segment loop it is checked against lives with the tests
(``tests/perception_reference.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from omni_r1.model.layout import TokenLayout


@dataclass(frozen=True)
class ImageSegments:
    """Complete image segments of a batch; row n of every tensor is segment n."""

    batch_index: torch.Tensor  # [N] response each segment belongs to
    start: torch.Tensor  # [N] position of its first image token (BOI + 1)
    codes: torch.Tensor  # [N, H*W] codebook indices


@dataclass(frozen=True)
class PerceptionScores:
    """Per-response perception scores and the per-segment values behind them."""

    score: torch.Tensor  # [B] aggregated score, NaN where has_image is False
    has_image: torch.Tensor  # [B] bool: at least one complete segment
    segment_count: torch.Tensor  # [B] complete segments per response
    segment_tv: torch.Tensor  # [N] total variation of each segment
    segment_batch_index: torch.Tensor  # [N]


# ---------------------------------------------------------------------------------------------
# Score maps and aggregations (chosen by name)
# ---------------------------------------------------------------------------------------------


def exp_score(tv: torch.Tensor, tau: float) -> torch.Tensor:
    """Paper: exp(−TV/τ).

    Paper §4.2, Eq. 10.
    """
    return torch.exp(-tv / tau)


def inv_score(tv: torch.Tensor, tau: float) -> torch.Tensor:
    """Official default: 1 / (1 + TV/τ).

    Paper §4.2, Eq. 10 as the official code maps it.
    """
    return 1.0 / (1.0 + tv / tau)


ScoreMap = Callable[[torch.Tensor, float], torch.Tensor]
SCORE_MAPS: dict[str, ScoreMap] = {"exp": exp_score, "inv": inv_score}


def _fill_empty(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return torch.where(counts > 0, values, torch.full_like(values, math.nan))


def aggregate_min(padded: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Row minimum of a NaN-padded [B, M] matrix; NaN for empty rows."""
    return _fill_empty(padded.nan_to_num(nan=math.inf).amin(dim=1), counts)  # [B]


def aggregate_max(padded: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return _fill_empty(padded.nan_to_num(nan=-math.inf).amax(dim=1), counts)  # [B]


def aggregate_mean(padded: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return _fill_empty(padded.nansum(dim=1) / counts.clamp(min=1), counts)  # [B]


def aggregate_median(padded: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Median as numpy computes it: the mean of the two middle values for even counts."""
    ordered = padded.nan_to_num(nan=math.inf).sort(dim=1).values  # [B, M], padding last
    low = ((counts - 1).clamp(min=0) // 2).unsqueeze(1)  # [B, 1]
    high = (counts // 2).clamp(max=max(padded.shape[1] - 1, 0)).unsqueeze(1)  # [B, 1]
    median = 0.5 * (ordered.gather(1, low) + ordered.gather(1, high)).squeeze(1)  # [B]
    return _fill_empty(median, counts)


Aggregation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AGGREGATIONS: dict[str, Aggregation] = {
    "min": aggregate_min,
    "mean": aggregate_mean,
    "max": aggregate_max,
    "median": aggregate_median,
}


def lookup(table: dict, name: str, what: str):
    """``table[name]`` or a KeyError that lists the known names."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None


# ---------------------------------------------------------------------------------------------
# Segments and total variation
# ---------------------------------------------------------------------------------------------


def find_image_segments(
    response_ids: torch.Tensor, response_mask: torch.Tensor, layout: TokenLayout
) -> ImageSegments:
    """Find every complete segment (BOI, exactly H·W image tokens, EOI) with tensor ops.

    Paper §4.2: only complete segments count.

    Args:
        response_ids: [B, L] generated token ids.
        response_mask: [B, L] 1 for real response tokens, 0 for padding.
        layout: the token layout (BOI/EOI ids, image id range, grid).

    Returns:
        :class:`ImageSegments` ordered by (response, position).
    """
    batch, length = response_ids.shape
    span = layout.tokens_per_image
    valid = response_mask.bool()  # [B, L]
    is_image = layout.is_image_token(response_ids) & valid  # [B, L]
    image_run = torch.nn.functional.pad(is_image.long().cumsum(dim=1), (1, 0))  # [B, L+1]
    padded_ids = torch.nn.functional.pad(response_ids, (0, span + 1), value=-1)  # [B, L+S+1]
    padded_valid = torch.nn.functional.pad(valid, (0, span + 1), value=False)  # [B, L+S+1]
    boi_b, boi_p = torch.nonzero((response_ids == layout.boi_id) & valid, as_tuple=True)  # [M]
    eoi_p = boi_p + span + 1  # [M] where the EOI must be
    images_between = image_run[boi_b, (boi_p + span + 1).clamp(max=length)] - image_run[boi_b, boi_p + 1]
    complete = (
        (eoi_p < length)
        & (images_between == span)
        & (padded_ids[boi_b, eoi_p] == layout.eoi_id)
        & padded_valid[boi_b, eoi_p]
    )  # [M]
    batch_index, start = boi_b[complete], boi_p[complete] + 1  # [N]
    positions = start.unsqueeze(1) + torch.arange(span, device=response_ids.device)  # [N, S]
    codes = layout.ids_to_codes(response_ids[batch_index.unsqueeze(1), positions])  # [N, S]
    return ImageSegments(batch_index=batch_index, start=start, codes=codes)


def segment_total_variation(
    codes: torch.Tensor, codebook: torch.Tensor, grid_h: int, grid_w: int
) -> torch.Tensor:
    """TV of each segment from one embedding lookup.

    Paper §4.2.

    Args:
        codes: [N, H*W] codebook indices, row-major.
        codebook: [K, D] frozen VQ embeddings E.

    Returns:
        [N] TV = (mean ||ΔxZ||² + mean ||ΔyZ||²) / D; a 1-wide axis contributes 0.
    """
    count, dim = codes.shape[0], codebook.shape[1]
    z = codebook[codes].view(count, grid_h, grid_w, dim)  # [N, H, W, D]
    tv = z.new_zeros(count)  # [N]
    if grid_w > 1:
        tv = tv + (z[:, :, 1:] - z[:, :, :-1]).square_().sum(dim=-1).mean(dim=(1, 2))  # [N]
    if grid_h > 1:
        tv = tv + (z[:, 1:] - z[:, :-1]).square_().sum(dim=-1).mean(dim=(1, 2))  # [N]
    return tv / dim


def codebook_squared_distances(codebook: torch.Tensor) -> torch.Tensor:
    """[K, K] table of ||E_a − E_b||², computed once for a frozen codebook (float64 inside)."""
    e = codebook.double()  # [K, D]
    norms = e.square().sum(dim=1)  # [K]
    table = norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * e @ e.T  # [K, K]
    return table.clamp_(min=0.0).to(codebook.dtype)


def segment_total_variation_from_table(
    codes: torch.Tensor, squared_distances: torch.Tensor, dim: int, grid_h: int, grid_w: int
) -> torch.Tensor:
    """The same TV as :func:`segment_total_variation`, from a [K, K] distance table.

    Paper §4.2.

    Only N·H·W scalar lookups: no [N, H, W, D] tensor is materialised.
    """
    count, num_codes = codes.shape[0], squared_distances.shape[0]
    grid = codes.view(count, grid_h, grid_w)  # [N, H, W]
    flat_table = squared_distances.reshape(-1)  # [K*K]
    tv = squared_distances.new_zeros(count)  # [N]
    if grid_w > 1:
        pairs = grid[:, :, :-1] * num_codes + grid[:, :, 1:]  # [N, H, W-1]
        tv = tv + flat_table[pairs].mean(dim=(1, 2))
    if grid_h > 1:
        pairs = grid[:, :-1] * num_codes + grid[:, 1:]  # [N, H-1, W]
        tv = tv + flat_table[pairs].mean(dim=(1, 2))
    return tv / dim


def _per_response(values: torch.Tensor, batch_index: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter [N] segment values into a NaN-padded [B, M] matrix; also return counts [B]."""
    counts = torch.bincount(batch_index, minlength=batch)  # [B]
    offsets = counts.cumsum(0) - counts  # [B] first segment of each response
    slot = torch.arange(batch_index.numel(), device=values.device) - offsets[batch_index]  # [N]
    width = int(counts.max()) if batch_index.numel() else 0
    padded = values.new_full((batch, max(width, 1)), math.nan)  # [B, M]
    padded[batch_index, slot] = values
    return padded, counts


def perception_score(
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    codebook: torch.Tensor,
    layout: TokenLayout,
    *,
    tau: float,
    score_map: str,
    aggregation: str,
    squared_distances: torch.Tensor | None = None,
) -> PerceptionScores:
    """Perception reward of a batch of responses, vectorised over all segments.

    Paper §4.2 perception reward, Eq. 10.

    Args:
        response_ids: [B, L] generated token ids.
        response_mask: [B, L] 1 on response tokens.
        codebook: [K, D] frozen VQ embeddings.
        layout: token layout (BOI/EOI, image ids, grid H×W).
        tau: temperature τ of the score map.
        score_map: ``"exp"`` (paper) or ``"inv"`` (official).
        aggregation: ``"min" | "mean" | "max" | "median"`` over a response's segments.
        squared_distances: optional [K, K] table from :func:`codebook_squared_distances`;
            when given, TV is read from it instead of the [N, H, W, D] embedding tensor.

    Returns:
        :class:`PerceptionScores` (score NaN and has_image False without a complete segment).
    """
    to_score = lookup(SCORE_MAPS, score_map, "perception score map")
    reduce = lookup(AGGREGATIONS, aggregation, "segment aggregation")
    segments = find_image_segments(response_ids, response_mask, layout)
    if squared_distances is None:
        tv = segment_total_variation(segments.codes, codebook, layout.grid_h, layout.grid_w)
    else:
        tv = segment_total_variation_from_table(
            segments.codes, squared_distances, codebook.shape[1], layout.grid_h, layout.grid_w
        )
    padded, counts = _per_response(to_score(tv, tau), segments.batch_index, response_ids.shape[0])
    return PerceptionScores(
        score=reduce(padded, counts),
        has_image=counts > 0,
        segment_count=counts,
        segment_tv=tv,
        segment_batch_index=segments.batch_index,
    )
