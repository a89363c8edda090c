"""The trajectory gallery of one evaluated checkpoint: what the model wrote and drew.

Each entry shows the question, its input image, every step the model wrote (rationale,
action, and the image it generated, decoded from its codebook tokens with the checkpoint's
VQ decoder), beside it the executor's rendering of the same action with the image's fidelity
scores (:mod:`omni_r1.eval.fidelity`) or why it was not scored, its final answer, the
reference answer and the judge's verdict. Rendering is
:func:`omni_r1.gallery.render_gallery_html` (one self-contained page).

Generated output need not be well formed: images are given to the parsed steps that have an
image slot, in order, by :func:`omni_r1.gallery.gallery_entry`; an image the parser could not
place in a step (e.g. written before ``THOUGHT 1``) is shown as an extra step, so every
decoded image appears on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from omni_r1.data.records import from_png
from omni_r1.gallery import (
    GalleryEntry,
    gallery_entry,
    render_gallery_html,
    render_side_by_side_html,
)
from omni_r1.rewards.fidelity import ImageStatus
from omni_r1.trajectory import parse_trajectory

Decoder = Callable[[torch.Tensor], list[Image.Image]]  # codes [n, H*W] -> images


def spread_over_slices(slices: Sequence[str], count: int) -> list[int]:
    """Row indices of ``count`` examples taken round-robin over the slices, in row order."""
    by_slice: dict[str, list[int]] = {}
    for index, name in enumerate(slices):
        by_slice.setdefault(name, []).append(index)
    chosen: list[int] = []
    queues = [list(rows) for rows in by_slice.values()]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def fidelity_note(row: dict[str, Any], image: int) -> str | None:
    """The scores of one generated image as a line of text, or why it was not scored."""
    statuses = row.get("fidelity_status") or []
    if image >= len(statuses):
        return None
    status = statuses[image]
    if status != ImageStatus.SCORED:
        return f"fidelity: not scored ({status.replace('_', ' ')})"
    agreement = row["fidelity_code_agreement"][image]
    distance = row["fidelity_embedding_distance"][image]
    psnr = row["fidelity_psnr"][image]
    psnr_text = "–" if psnr != psnr else f"{psnr:.1f} dB"  # NaN: no VQ decoder
    return f"fidelity: code agreement {agreement:.3f} · embedding distance {distance:.4f} · PSNR {psnr_text}"


def prediction_entry(
    row: dict[str, Any],
    input_pngs: Sequence[bytes],
    decode: Decoder | None,
    renderings: Sequence[Image.Image | None] | None = None,
) -> GalleryEntry:
    """One predictions row → a gallery entry (see the module docstring)."""
    codes = torch.tensor(row["image_codes"], dtype=torch.long)  # [n, H*W]
    count = int(codes.shape[0]) if codes.numel() else 0
    images: list[Image.Image | None] = decode(codes) if decode is not None and count else [None] * count
    return gallery_entry(
        row["question"],
        parse_trajectory(row["response"]).steps,
        images,
        row["prediction"] or None,
        renderings=renderings,
        notes=[fidelity_note(row, k) for k in range(count)],
        input_images=[from_png(png) for png in input_pngs],
        reference_answer=row["gold"],
        verdict=bool(row["verdict"]),
        name=f"{row['slice']} · {row['record_id']}",
    )


def render_checkpoint_gallery(
    rows: Sequence[dict[str, Any]],
    input_pngs: Sequence[Sequence[bytes]],
    decode: Decoder | None,
    examples: int,
    title: str,
    renderings: Sequence[Sequence[Image.Image | None]] | None = None,
) -> str:
    """The HTML page of ``examples`` predictions spread over the slices.

    Args:
        rows: predictions rows (:data:`omni_r1.eval.evaluate.PREDICTIONS_SCHEMA`).
        input_pngs: the input images (PNG bytes) of each row's record, row-aligned.
        decode: codes → images (the checkpoint's VQ decoder); None shows no generated image.
        examples: entries on the page.
        title: page title.
        renderings: per row, the executor's rendering of each generated image (None where
            not scored), shown beside it; None shows none.
    """
    chosen = spread_over_slices([row["slice"] for row in rows], examples)
    entries = [
        prediction_entry(rows[i], input_pngs[i], decode, renderings[i] if renderings is not None else None)
        for i in chosen
    ]
    return render_gallery_html(entries, title)


def render_side_by_side(
    rows_a: Sequence[dict[str, Any]],
    rows_b: Sequence[dict[str, Any]],
    input_pngs: dict[str, Sequence[bytes]],
    decoders: tuple[Decoder | None, Decoder | None],
    examples: int,
    headings: tuple[str, str],
    title: str,
) -> str:
    """The same questions answered by two checkpoints, side by side, spread over the slices.

    Args:
        rows_a, rows_b: predictions rows of checkpoint A (left) and B (right).
        input_pngs: record id → its input images (PNG bytes).
        decoders: codes → images for A and for B (None shows no generated image).
        examples: questions on the page, taken from the records both answered (A's order).
        headings: the column headings.
        title: page title.

    Raises:
        KeyError: a shared record has no input images in ``input_pngs`` (names the record).
    """
    return render_columns((rows_a, rows_b), input_pngs, decoders, examples, headings, title)


def render_columns(
    tables: Sequence[Sequence[dict[str, Any]]],
    input_pngs: dict[str, Sequence[bytes]],
    decoders: Sequence[Decoder | None],
    examples: int,
    headings: Sequence[str],
    title: str,
) -> str:
    """The same questions answered under each of ``tables`` (one column each), spread over the slices.

    Questions are the records every table answered, in the first table's order; arguments as
    in :func:`render_side_by_side`, one decoder and heading per table.

    Raises:
        KeyError: a shared record has no input images in ``input_pngs`` (names the record).
    """
    by_id = [{row["record_id"]: row for row in table} for table in tables[1:]]
    shared = [row for row in tables[0] if all(row["record_id"] in other for other in by_id)]
    chosen = spread_over_slices([row["slice"] for row in shared], examples)
    rows = []
    for index in chosen:
        first = shared[index]
        record = first["record_id"]
        if record not in input_pngs:
            raise KeyError(f"record {record!r}: no input images among the benchmark records")
        answers = [first, *(other[record] for other in by_id)]
        rows.append(tuple(
            prediction_entry(row, input_pngs[record], decoder) for row, decoder in zip(answers, decoders, strict=True)
        ))  # fmt: skip
    return render_side_by_side_html(rows, tuple(headings), title)
