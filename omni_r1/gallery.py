"""The trajectory gallery: one self-contained HTML page of interleaved trajectories.

Each entry shows the question (and choices), the input image(s), every step's rationale,
its action in the trajectory text syntax (``ZOOM(0.1, 0.2, 0.3, 0.3)``) and its image,
then the final answer, the reference answer and the verdict when an evaluation supplies
them. An evaluation also shows, beside a generated image, the executor's rendering of the
same action and the image's fidelity scores (or why it was not scored). Images are
embedded as base64 PNG data URIs and all text is HTML-escaped, so the page needs no other
file and no network; it is logged to MLflow as one artifact.
:func:`render_side_by_side_html` shows pairs of entries of the same question in two columns.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from omni_r1.trajectory import Action, Step, render_action

DISPLAY_WIDTH = 192  # CSS width of every image on the page; pixels stay sharp (pixelated)


@dataclass(frozen=True)
class GalleryStep:
    """One step as shown: rationale, optional action, optional image."""

    rationale: str
    action: Action | None = None
    image: Image.Image | None = None
    rendering: Image.Image | None = None  # the executor's rendering of the same action
    note: str | None = None  # fidelity scores, or why the image was not scored


@dataclass(frozen=True)
class GalleryEntry:
    """One trajectory as shown. ``verdict`` and ``reference_answer`` are for evaluation."""

    question: str
    steps: tuple[GalleryStep, ...]
    final_answer: str | None
    input_images: tuple[Image.Image, ...] = ()
    choices: tuple[str, ...] = ()
    reference_answer: str | None = None
    verdict: bool | str | None = None
    name: str | None = None


OUTSIDE_STEP = "(image outside any step)"  # rationale of an image no step has a slot for


def place_images(
    steps: Sequence[Step],
    images: Sequence[Image.Image | None],
    renderings: Sequence[Image.Image | None] | None = None,
    notes: Sequence[str | None] | None = None,
) -> tuple[GalleryStep, ...]:
    """The steps as shown, each image given to the next step with an image slot.

    Generated output need not be well formed, so counts may differ: a slot left without an
    image shows none, and an image left without a slot (e.g. drawn before ``THOUGHT 1``)
    is shown as an extra step after the others. No image (nor its note) is ever dropped.
    The placement is the one the fidelity scorer uses (:func:`omni_r1.rewards.fidelity.image_steps`).

    Args:
        steps: the trajectory's steps (rationale, action, ``has_image``), in order.
        images: one image per image slot in order, as executed or decoded (None: no image).
        renderings: per image, the executor's rendering of its action (None: none shown).
        notes: per image, a line shown under it (fidelity scores, or why it was not scored).

    Returns:
        One :class:`GalleryStep` per step, then one per image left over.
    """
    count = len(images)
    renderings = list(renderings) if renderings is not None else [None] * count
    notes = list(notes) if notes is not None else [None] * count
    remaining = list(range(count))

    def shown(rationale: str, action: Action | None, k: int | None) -> GalleryStep:
        if k is None:
            return GalleryStep(rationale, action)
        return GalleryStep(rationale, action, images[k], renderings[k], notes[k])

    placed = [
        shown(step.rationale, step.action, remaining.pop(0) if step.has_image and remaining else None)
        for step in steps
    ]
    placed += [
        shown(OUTSIDE_STEP, None, k)
        for k in remaining
        if images[k] is not None or notes[k] is not None
    ]
    return tuple(placed)


def gallery_entry(
    question: str,
    steps: Sequence[Step],
    images: Sequence[Image.Image | None],
    final_answer: str | None,
    *,
    renderings: Sequence[Image.Image | None] | None = None,
    notes: Sequence[str | None] | None = None,
    input_images: Sequence[Image.Image] = (),
    choices: Sequence[str] = (),
    reference_answer: str | None = None,
    verdict: bool | str | None = None,
    name: str | None = None,
) -> GalleryEntry:
    """The one builder of gallery entries: a trajectory's steps with its images placed.

    Used for executed trajectories (images from ``Executor.execute_trajectory``), evaluated
    predictions and PeRPO rollouts (images decoded from the generated codes).

    Args:
        question: the question shown.
        steps: the trajectory's steps, or the steps parsed from generated text.
        images: the images of the image slots in order (see :func:`place_images`).
        final_answer: the answer shown (None: "(none)").
        renderings, notes: per image, shown beside and under it (see :func:`place_images`).
        input_images, choices, reference_answer, verdict, name: shown as given.
    """
    return GalleryEntry(
        question=question,
        steps=place_images(steps, images, renderings, notes),
        final_answer=final_answer,
        input_images=tuple(input_images),
        choices=tuple(choices),
        reference_answer=reference_answer,
        verdict=verdict,
        name=name,
    )


def image_data_uri(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of the image (PNG encoding is deterministic)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image: Image.Image, alt: str) -> str:
    width, height = image.size
    return (
        f'<img src="{image_data_uri(image)}" width="{width}" height="{height}" '
        f'alt="{html.escape(alt)}">'
    )


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


_STYLE = f"""
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }}
section {{ border-top: 2px solid #ccc; padding: 1em 0; }}
figure {{ display: inline-block; margin: 0.3em 1em 0.3em 0; }}
figure img {{ width: {DISPLAY_WIDTH}px; height: auto; image-rendering: pixelated;
  border: 1px solid #999; }}
code.action {{ background: #eef; padding: 0.1em 0.4em; }}
figcaption {{ font-size: 0.8em; color: #555; }}
p.fidelity {{ font-size: 0.9em; color: #335; }}
.verdict-true {{ color: #070; }} .verdict-false {{ color: #a00; }}
div.pair {{ display: flex; gap: 1.5em; align-items: flex-start; }}
div.pair > div {{ flex: 1 1 0; min-width: 0; }}
"""


def _verdict_class(verdict: bool | str) -> str:
    value = str(verdict).strip().lower()
    if value in {"true", "correct", "1"}:
        return "verdict verdict-true"
    if value in {"false", "wrong", "incorrect", "0"}:
        return "verdict verdict-false"
    return "verdict"


def _render_step(number: int, step: GalleryStep) -> str:
    parts = [f"<li><p><b>THOUGHT {number}:</b> {_text(step.rationale)}</p>"]
    if step.action is not None:
        parts.append(
            f'<p>ACTION: <code class="action">{_text(render_action(step.action))}</code></p>'
        )
    if step.image is not None:
        caption = "<figcaption>generated</figcaption>" if step.rendering is not None else ""
        parts.append(f"<figure>{_img(step.image, f'step {number} image')}{caption}</figure>")
    if step.rendering is not None:
        parts.append(
            f"<figure>{_img(step.rendering, f'step {number} rendering')}"
            "<figcaption>executor rendering</figcaption></figure>"
        )
    if step.note is not None:
        parts.append(f'<p class="fidelity">{_text(step.note)}</p>')
    parts.append("</li>")
    return "".join(parts)


def _render_entry(index: int, entry: GalleryEntry) -> str:
    heading = f"{index}. {entry.name}" if entry.name else f"Trajectory {index}"
    parts = [f'<section class="trajectory"><h2>{_text(heading)}</h2>']
    parts.append(f'<p class="question"><b>Question:</b> {_text(entry.question)}</p>')
    if entry.choices:
        items = "".join(f"<li>{_text(choice)}</li>" for choice in entry.choices)
        parts.append(f'<ol type="A" class="choices">{items}</ol>')
    for number, image in enumerate(entry.input_images, start=1):
        parts.append(f"<figure>{_img(image, f'input image {number}')}</figure>")
    steps = "".join(_render_step(n, step) for n, step in enumerate(entry.steps, start=1))
    parts.append(f'<ol class="steps">{steps}</ol>')
    answer = "(none)" if entry.final_answer is None else entry.final_answer
    parts.append(f'<p class="answer"><b>Final Answer:</b> {_text(answer)}</p>')
    if entry.reference_answer is not None:
        parts.append(f'<p class="reference"><b>Reference:</b> {_text(entry.reference_answer)}</p>')
    if entry.verdict is not None:
        verdict_class = _verdict_class(entry.verdict)
        parts.append(f'<p class="{verdict_class}"><b>Verdict:</b> {_text(entry.verdict)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render_gallery_html(entries: Sequence[GalleryEntry], title: str) -> str:
    """One self-contained HTML page showing every entry.

    Args:
        entries: the trajectories to show, in order.
        title: page title and heading (escaped).

    Returns:
        The HTML text; one ``<img>`` per input and step image, each a PNG data URI.
    """
    body = "\n".join(_render_entry(i, entry) for i, entry in enumerate(entries, start=1))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
        f"<style>{_STYLE}</style></head>\n"
        f"<body><h1>{_text(title)}</h1>\n"
        f"<p>{len(entries)} trajectories.</p>\n{body}\n</body></html>\n"
    )


def render_side_by_side_html(
    pairs: Sequence[tuple[GalleryEntry, ...]], headings: tuple[str, ...], title: str
) -> str:
    """One self-contained page showing the entries of one question side by side, one row each.

    Args:
        pairs: per question, its entries left to right (e.g. two checkpoints, or three regimes).
        headings: the column headings, one per entry, e.g. the checkpoint names.
        title: page title and heading (escaped).
    """
    rows = []
    for index, entries in enumerate(pairs, start=1):
        columns = "".join(
            f"<div><h3>{_text(heading)}</h3>{_render_entry(index, entry)}</div>"
            for heading, entry in zip(headings, entries, strict=True)
        )
        rows.append(f'<div class="pair">{columns}</div>')
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
        f"<style>{_STYLE}</style></head>\n"
        f"<body><h1>{_text(title)}</h1>\n"
        f"<p>{len(pairs)} questions, each answered by all {len(headings)}.</p>\n" + "\n".join(rows) + "\n</body></html>\n"
    )
