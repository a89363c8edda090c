"""The trajectory gallery of one evaluated checkpoint: what the model wrote and drew.

Each entry shows the question, its input image, every step the model wrote (rationale,
action, and the image it generated, decoded from its codebook tokens with the checkpoint's
VQ decoder), its final answer, the reference answer and the judge's verdict. Rendering is
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
from omni_r1.gallery import GalleryEntry, gallery_entry, render_gallery_html
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


def prediction_entry(
    row: dict[str, Any], input_pngs: Sequence[bytes], decode: Decoder | None
) -> GalleryEntry:
    """One predictions row → a gallery entry (see the module docstring)."""
    codes = torch.tensor(row["image_codes"], dtype=torch.long)  # [n, H*W]
    images = decode(codes) if decode is not None and codes.numel() else []
    return gallery_entry(
        row["question"],
        parse_trajectory(row["response"]).steps,
        images,
        row["prediction"] or None,
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
) -> str:
    """The HTML page of ``examples`` predictions spread over the slices.

    Args:
        rows: predictions rows (:data:`omni_r1.eval.evaluate.PREDICTIONS_SCHEMA`).
        input_pngs: the input images (PNG bytes) of each row's record, row-aligned.
        decode: codes → images (the checkpoint's VQ decoder); None shows no generated image.
        examples: entries on the page.
        title: page title.
    """
    chosen = spread_over_slices([row["slice"] for row in rows], examples)
    entries = [prediction_entry(rows[i], input_pngs[i], decode) for i in chosen]
    return render_gallery_html(entries, title)
