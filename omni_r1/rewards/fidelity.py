"""Functional-image fidelity: is each generated image the image its action asks for?

The paper's trajectories are v_t = Exec(a_t, v_{t-1}) (Appendix A): the image after
``BBOX(...)`` is the previous image with that box drawn, the image after ``ZOOM(...)`` the
zoomed region. The model generates v_t itself; the project owns a deterministic executor for
every action, so each generated image can be compared with the executor's rendering of the
same action. This module is the one scorer of that comparison, used by the evaluation
(:mod:`omni_r1.eval.fidelity`) and by the optional PeRPO fidelity reward term.

For one response (text with ``<image>`` per generated image, and its codes ``[n, H*W]``):

1. Images are placed on the parsed steps (:func:`image_steps`): the steps with an image slot
   take the images in order; images left over (outside any step) have no step.
2. The visual state starts at the input image v_0 (and the task state, for ``PRED``) and
   follows the executor's renderings: an image whose step has a parsed action is compared
   with ``Exec(action, state)``, which becomes the next state. An image without an action is
   ``no_action``; an action the executor rejects (a move into a wall, a ``ZOOM`` without an
   input image, ...) is ``rejected`` and leaves the state unchanged. Neither is scored;
   both are counted.
3. Every rendering of the batch is encoded with the same VQ tokenizer in one batched call;
   then, per scored image, with g its generated codes and r the rendering's codes:

   - code agreement: ``mean_p [g_p = r_p]`` (share of equal codes, 1.0 when equal);
   - embedding distance: ``mean_p ||E[g_p] − E[r_p]||² / D`` (E the frozen codebook
     [K, D], the distance of the perception loss of §4.1);
   - PSNR of the decoded generated image against the decoded rendering codes (both
     through the same VQ decoder, pixels in [0, 1]): ``min(10·log10(1 / MSE), cap)``, the
     cap when the codes are equal (then nothing is decoded). Comparing with the rendering
     as the tokenizer reproduces it keeps the tokenizer's own loss out of the model's
     score. NaN without a VQ decoder.

The headline score (``fidelity.headline``: code agreement, or PSNR / cap) is what the report
column, the pass threshold and the reward term read. Everything after the executor is
vectorised over all scored images of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
from PIL import Image

from omni_r1.executor import Executor
from omni_r1.trajectory import IMAGE_SLOT, ParsedTrajectory, parse_trajectory

Encode = Callable[[Sequence[Image.Image]], torch.Tensor]  # images → codes [M, H*W]
DecodePixels = Callable[[torch.Tensor], torch.Tensor]  # codes [M, H*W] → pixels [M, 3, S, S] in [-1, 1]
DISTANCE_CHUNK = 256  # images per embedding-distance chunk: bounds the [chunk, H*W, D] gather


class ImageStatus(StrEnum):
    SCORED = "scored"  # the step has an action the executor rendered
    NO_ACTION = "no_action"  # no parsed action for this image (or the image is outside any step)
    REJECTED = "rejected"  # the executor refused the action


STATUSES: tuple[ImageStatus, ...] = tuple(ImageStatus)


@dataclass(frozen=True)
class FidelityInput:
    """One response to score: its text, generated codes, and the visual state v_0."""

    text: str  # trajectory text, ``<image>`` per generated image
    codes: torch.Tensor  # [n, H*W] codebook indices of the generated images, in order
    input_image: Image.Image | None  # v_0 (None: actions that need an image are rejected)
    state: object | None = None  # task state for PRED transitions (e.g. a GridState)


@dataclass(frozen=True)
class Reference:
    """The executor's reference for one generated image."""

    status: ImageStatus
    action: Any  # the parsed action, None for no_action
    rendering: Image.Image | None  # Exec(action, state) when scored
    reason: str  # why the image is not scored ("" when scored)


@dataclass(frozen=True)
class VisualCodec:
    """The VQ tokenizer the scores are taken in: encoder, frozen codebook, optional decoder."""

    encode: Encode
    codebook: torch.Tensor  # [K, D]
    decode: DecodePixels | None


@dataclass(frozen=True)
class FidelityScores:
    """Per-image scores of a batch; row m of every tensor is image m (responses in order)."""

    response_index: torch.Tensor  # [M] long, the response each image belongs to
    status: tuple[ImageStatus, ...]  # [M]
    references: tuple[Reference, ...]  # [M]
    code_agreement: torch.Tensor  # [M] float64, NaN unless scored
    embedding_distance: torch.Tensor  # [M] float64, NaN unless scored
    psnr: torch.Tensor  # [M] float64 dB, NaN unless scored with a decoder
    headline: torch.Tensor  # [M] float64 in [0, 1], NaN unless scored
    response_count: int  # B

    def counts(self) -> dict[str, int]:
        """Images per status, every status present."""
        return {status.value: sum(s == status for s in self.status) for status in STATUSES}

    def renderings(self) -> list[list[Image.Image | None]]:
        """Per response, the executor's rendering of each of its images (None unless scored)."""
        by_response: list[list[Image.Image | None]] = [[] for _ in range(self.response_count)]
        for owner, reference in zip(self.response_index.tolist(), self.references, strict=True):
            by_response[owner].append(reference.rendering)
        return by_response

    def per_response(self) -> torch.Tensor:
        """Mean headline score of each response's scored images: [B], NaN where none was scored."""
        scored = ~torch.isnan(self.headline)  # [M]
        sums = torch.zeros(self.response_count, dtype=torch.float64)  # [B]
        counts = torch.zeros(self.response_count, dtype=torch.float64)  # [B]
        sums.index_add_(0, self.response_index[scored], self.headline[scored])
        counts.index_add_(0, self.response_index[scored], torch.ones(int(scored.sum()), dtype=torch.float64))
        return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))


# ---------------------------------------------------------------------------------------------
# Placing images on steps and rendering their references
# ---------------------------------------------------------------------------------------------


def image_steps(parsed: ParsedTrajectory, count: int) -> list[int | None]:
    """The step index (0-based) of each of ``count`` images; None for an image outside any step.

    Steps with an image slot take the images in order; images beyond the slots have no step.
    """
    slots = [index for index, step in enumerate(parsed.steps) if step.has_image]
    return [slots[k] if k < len(slots) else None for k in range(count)]


def render_references(
    text: str,
    count: int,
    input_image: Image.Image | None,
    state: object | None,
    executor: Executor,
) -> list[Reference]:
    """The executor's reference for each of the ``count`` generated images of one response.

    The visual state starts at ``input_image``/``state`` and follows the renderings (see the
    module docstring); a rejected action leaves it unchanged.
    """
    return replay_actions(text, count, input_image, state, executor)[0]


def replay_actions(
    text: str,
    count: int,
    input_image: Image.Image | None,
    state: object | None,
    executor: Executor,
) -> tuple[list[Reference], Image.Image | None]:
    """:func:`render_references` and the visual state after the last image: ``(references, v_T)``.

    ``v_T`` is the last rendering that was accepted, or ``input_image`` when none was.
    """
    parsed = parse_trajectory(text)
    visual, task = input_image, state
    references = []
    for step_index in image_steps(parsed, count):
        action = parsed.steps[step_index].action if step_index is not None else None
        if action is None:
            reason = "image outside any step" if step_index is None else "step has no parsed action"
            references.append(Reference(ImageStatus.NO_ACTION, None, None, reason))
            continue
        result = executor.execute(action, visual, task)
        if result.issue is not None:
            references.append(Reference(ImageStatus.REJECTED, action, None, result.issue.message))
            continue
        visual, task = result.image, result.state
        references.append(Reference(ImageStatus.SCORED, action, result.image, ""))
    return references, visual


def tool_rendering(
    text: str, input_image: Image.Image | None, state: object | None, executor: Executor
) -> tuple[Image.Image, ImageStatus]:
    """The image a rendering tool inserts at the last image slot of a partial response.

    ``text`` is the response so far, ending in the slot (``<image>``) the tool fills. The
    slot's step action is executed on the visual state the earlier slots left
    (:func:`replay_actions`, the state logic fidelity scores with). Without a parsed action,
    or when the executor rejects it, the state is shown unchanged (a blank canvas of
    ``executor.cfg.resolution`` when there is no image at all), and the status says why.
    """
    references, visual = replay_actions(text, text.count(IMAGE_SLOT), input_image, state, executor)
    last = references[-1]
    if last.status == ImageStatus.SCORED:
        return last.rendering, last.status
    if visual is None:
        side = executor.cfg.resolution
        visual = Image.new("RGB", (side, side), tuple(executor.cfg.floor_color))
    return visual, last.status


# ---------------------------------------------------------------------------------------------
# Pure comparisons (vectorised over images)
# ---------------------------------------------------------------------------------------------


def code_agreement(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Share of equal codes: [M, H*W], [M, H*W] → [M]."""
    return (generated == reference).double().mean(dim=-1)


def embedding_distance(generated: torch.Tensor, reference: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``mean_p ||E[g_p] − E[r_p]||² / D``: [M, H*W], [M, H*W], E [K, D] → [M]."""
    table = codebook.detach().double().cpu()  # [K, D]
    out = []
    for start in range(0, generated.shape[0], DISTANCE_CHUNK):
        diff = table[generated[start : start + DISTANCE_CHUNK]] - table[reference[start : start + DISTANCE_CHUNK]]
        out.append(diff.pow(2).sum(-1).mean(-1) / table.shape[1])  # [m]  (diff: [m, H*W, D])
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def psnr(generated: torch.Tensor, reference: torch.Tensor, cap_db: float) -> torch.Tensor:
    """PSNR in dB of pixels in [-1, 1] mapped to [0, 1], capped: [M, 3, S, S] x 2 → [M].

    ``10·log10(1 / MSE)``; equal images (MSE 0) and anything above the cap score ``cap_db``.
    """
    mse = ((generated.double() - reference.double()) / 2.0).pow(2).flatten(1).mean(-1)  # [M]
    value = 10.0 * torch.log10(1.0 / mse.clamp(min=1e-300))  # [M]
    return value.clamp(max=cap_db)


def decoded_psnr(
    generated: torch.Tensor, reference: torch.Tensor, decode: DecodePixels, cap_db: float
) -> torch.Tensor:
    """PSNR of the decoded codes: [S, H*W] x 2 → [S] dB.

    Pairs with identical codes decode to identical pixels, so they score the cap without
    being decoded; the others are decoded in one pass (generated and reference together),
    each distinct code grid once (a model often draws the same grid for several answers).
    """
    out = torch.full((generated.shape[0],), cap_db, dtype=torch.float64)  # [S]
    differ = (generated != reference).any(dim=-1).nonzero().squeeze(-1)  # [S']
    if differ.numel():
        grids, inverse = torch.unique(torch.cat([generated[differ], reference[differ]]), dim=0, return_inverse=True)
        pixels = decode(grids)[inverse]  # [2S', 3, P, P]
        out[differ] = psnr(pixels[: differ.numel()], pixels[differ.numel() :], cap_db)
    return out


HEADLINES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "code_agreement": lambda agreement, psnr_db, cap_db: agreement,
    "psnr": lambda agreement, psnr_db, cap_db: psnr_db / cap_db,
}


# ---------------------------------------------------------------------------------------------
# The batch scorer
# ---------------------------------------------------------------------------------------------


def score_fidelity(
    inputs: Sequence[FidelityInput],
    executor: Executor,
    codec: VisualCodec,
    psnr_cap_db: float,
    headline: str,
) -> FidelityScores:
    """Score every generated image of ``inputs`` against the executor's rendering.

    Args:
        inputs: B responses (text, generated codes [n_b, H*W], v_0, task state).
        executor: renders Exec(a_t, v_{t-1}).
        codec: the VQ tokenizer (encode, codebook [K, D], optional decoder).
        psnr_cap_db: PSNR of equal images and the most any image scores.
        headline: name in :data:`HEADLINES` of the [0, 1] score the report and reward read.

    Returns:
        :class:`FidelityScores` over all M = Σ n_b images (every status kept).
    """
    if headline not in HEADLINES:
        raise KeyError(f"unknown fidelity headline {headline!r}; known: {', '.join(sorted(HEADLINES))}")
    owners, references, generated_rows = [], [], []
    for index, item in enumerate(inputs):
        refs = render_references(item.text, int(item.codes.shape[0]), item.input_image, item.state, executor)
        owners += [index] * len(refs)
        references += refs
        generated_rows += [item.codes[k] for k in range(len(refs))]
    scored = [m for m, ref in enumerate(references) if ref.status == ImageStatus.SCORED]
    total = len(references)
    agreement, distance, psnr_db = (torch.full((total,), math.nan, dtype=torch.float64) for _ in range(3))
    if scored:
        generated = torch.stack([generated_rows[m] for m in scored]).long()  # [S, H*W]
        reference = codec.encode([references[m].rendering for m in scored]).long()  # [S, H*W]
        if reference.shape != generated.shape:
            raise ValueError(f"renderings encode to {tuple(reference.shape)}, generated codes are {tuple(generated.shape)}")
        rows = torch.tensor(scored)
        agreement[rows] = code_agreement(generated, reference)
        distance[rows] = embedding_distance(generated, reference, codec.codebook)
        if codec.decode is not None:
            psnr_db[rows] = decoded_psnr(generated, reference, codec.decode, psnr_cap_db)
    return FidelityScores(
        response_index=torch.tensor(owners, dtype=torch.long),
        status=tuple(ref.status for ref in references),
        references=tuple(references),
        code_agreement=agreement,
        embedding_distance=distance,
        psnr=psnr_db,
        headline=HEADLINES[headline](agreement, psnr_db, psnr_cap_db),
        response_count=len(inputs),
    )


def visual_codec(vqmodel: Any, decoder: Any, batch_size: int) -> VisualCodec:
    """The codec of a Chameleon VQ model (``ChameleonVQVAE``) and its optional VQ decoder."""
    from omni_r1.model.images import decode_pixels, encode_images

    def encode(images: Sequence[Image.Image]) -> torch.Tensor:
        return encode_images(vqmodel, images, images_per_pass=batch_size)

    decode = None
    if decoder is not None:
        decode = lambda codes: decode_pixels(decoder, vqmodel, codes, images_per_pass=batch_size)  # noqa: E731
    return VisualCodec(encode=encode, codebook=vqmodel.quantize.embedding.weight, decode=decode)


# ---------------------------------------------------------------------------------------------
# The reward term: from response token ids
# ---------------------------------------------------------------------------------------------

NEEDS_DECODER = frozenset({"psnr"})  # headlines that read decoded pixels


def response_fidelity(
    texts: Sequence[str],
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    layout: Any,
    input_images: Sequence[Image.Image | None],
    states: Sequence[object | None],
    executor: Executor,
    codec: VisualCodec,
    psnr_cap_db: float,
    headline: str,
) -> torch.Tensor:
    """Mean headline fidelity of each response's scored images, from token ids: [B], NaN where none.

    The generated images are the complete segments of ``response_ids`` (BOI, H·W image
    tokens, EOI, inside ``response_mask``: the images the perception reward reads), so a
    reward manager that receives token ids scores with the same code as the evaluation.

    Args:
        texts: B decoded responses (``<image>`` per complete image).
        response_ids, response_mask: [B, L].
        layout: the :class:`~omni_r1.model.layout.TokenLayout`.
        input_images, states: v_0 and the task state of each response's prompt.
        executor, codec, psnr_cap_db, headline: as in :func:`score_fidelity`.
    """
    from omni_r1.rewards.perception import find_image_segments

    segments = find_image_segments(response_ids, response_mask, layout)  # codes [N, H*W]
    inputs = [
        FidelityInput(text, segments.codes[segments.batch_index == row], image, state)
        for row, (text, image, state) in enumerate(zip(texts, input_images, states, strict=True))
    ]
    return score_fidelity(inputs, executor, codec, psnr_cap_db, headline).per_response()
