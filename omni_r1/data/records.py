"""The canonical data record every source is converted to, and its trajectory view.

A :class:`Record` is one task: question (+ choices, input images), an interleaved trace of
steps (rationale, optional atomic action, optional post-action image), the verified final
answer, and optionally a text-only chain of thought (``text_cot``) for the Omni-R1-Zero
bootstrap. Images are PNG bytes so a record is self-contained and hashable.

Uni-Tasks and Uni-Skills follow the paper's taxonomy: four task families (Omni-Bench slices)
and four skill families named after the atomic actions that exercise them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from omni_r1.trajectory import Action, Step, Trajectory, render_action

UniTask = Literal["natural", "structured", "diagrammatic", "vision_operational"]
UNI_TASKS: tuple[str, ...] = ("natural", "structured", "diagrammatic", "vision_operational")

# Uni-Skill -> the atomic actions that exercise it (paper, Appendix A). The one home of the names.
UNI_SKILLS: dict[str, tuple[str, ...]] = {
    "grounding": ("BBOX", "ZOOM"),
    "marking": ("MARK",),
    "auxiliary_drawing": ("LINE",),
    "state_prediction": ("PRED",),
}
ANSWER_TYPES: tuple[str, ...] = ("number", "choice", "text")
ACTION_ADAPTER: TypeAdapter[Any] = TypeAdapter(Action)


class DataError(ValueError):
    """A source record that cannot be converted; names the file, the record and the field.

    ``reason`` is a short machine-readable cause (``missing_field``, ``wrong_type``,
    ``corrupt_image``, ``empty_trace``, ``missing_image``, ...) counted in the manifest when
    bad records are skipped.
    """

    def __init__(self, file: str, record_id: str, field: str, reason: str, message: str):
        self.file, self.record_id, self.field, self.reason = file, record_id, field, reason
        super().__init__(f"{file}: record {record_id!r}, field {field!r}: {message} [{reason}]")


class RecordStep(BaseModel):
    """One step of a stored trace: rationale, optional action, optional image (PNG bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rationale: str
    action: Action | None = None
    image: bytes | None = None


class Record(BaseModel):
    """One task in canonical form. ``meta`` holds JSON-safe generator or source details."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    uni_task: UniTask
    skills: list[str]
    question: str
    choices: list[str]
    input_images: list[bytes]
    steps: list[RecordStep]
    final_answer: str
    answer_type: str
    text_cot: list[str] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def image_hashes(self) -> list[str]:
        """Pixel hashes of the input images, then of every step image, in order."""
        images = list(self.input_images) + [s.image for s in self.steps if s.image is not None]
        return [image_hash(png) for png in images]


def skills_of(actions: Iterable[Any]) -> list[str]:
    """The Uni-Skills exercised by a sequence of actions, in registry order."""
    kinds = {action.kind for action in actions if action is not None}
    return [skill for skill, names in UNI_SKILLS.items() if kinds & set(names)]


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def from_png(data: bytes) -> Image.Image:
    """Decode image bytes (PNG or any PIL format) to an RGB image; raises OSError if corrupt."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def image_hash(data: bytes) -> str:
    """sha256 of the decoded pixels (size + RGB bytes), so re-encodings of one image agree."""
    image = from_png(data)
    digest = hashlib.sha256(f"{image.width}x{image.height}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def image_bytes(value: Any, *, file: str, record_id: str, field: str) -> bytes:
    """Normalise an upstream image value (PIL image, ``{"bytes", "path"}`` dict, raw bytes) to PNG.

    Raises:
        DataError: ``missing_image`` when absent, ``wrong_type`` for other types,
            ``corrupt_image`` when the bytes do not decode.
    """
    if value is None:
        raise DataError(file, record_id, field, "missing_image", "image is missing")
    if isinstance(value, Image.Image):
        return to_png(value)
    if isinstance(value, dict):
        raw = value.get("bytes")
        if raw is None and value.get("path"):
            try:
                with open(value["path"], "rb") as handle:
                    raw = handle.read()
            except OSError as err:
                raise DataError(file, record_id, field, "missing_image", str(err)) from err
        value = raw
        if value is None:
            raise DataError(file, record_id, field, "missing_image", "image has no bytes or path")
    if not isinstance(value, bytes | bytearray):
        raise DataError(
            file, record_id, field, "wrong_type", f"expected an image, got {type(value).__name__}"
        )
    try:
        return to_png(from_png(bytes(value)))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(file, record_id, field, "corrupt_image", f"image does not decode: {err}") from err


def record_to_trajectory(record: Record) -> Trajectory:
    """The :class:`~omni_r1.trajectory.Trajectory` of a record, with PIL images.

    A step has an image slot exactly when the record step carries an image.
    """
    steps = tuple(
        Step(
            rationale=step.rationale,
            action=step.action,
            has_image=step.image is not None,
            image=from_png(step.image) if step.image is not None else None,
        )
        for step in record.steps
    )
    return Trajectory(
        question=record.question,
        choices=tuple(record.choices),
        input_images=tuple(from_png(png) for png in record.input_images),
        steps=steps,
        final_answer=record.final_answer,
    )


def text_cot_trajectory(record: Record) -> Trajectory:
    """The text-only chain of thought of a record (no step images), for Omni-R1-Zero."""
    if not record.text_cot:
        raise ValueError(f"record {record.id!r} has no text_cot")
    return Trajectory(
        question=record.question,
        choices=tuple(record.choices),
        input_images=tuple(from_png(png) for png in record.input_images),
        steps=tuple(Step(rationale=text) for text in record.text_cot),
        final_answer=record.final_answer,
    )


TEXT_ONLY_ACTION = "Action:"  # the action's text inside a text-only rationale (not the ACTION: line)


def text_only_record(record: Record) -> Record:
    """The same trace with every step image removed, rationale and action kept as text.

    The study's ``text_only`` regime. A trajectory step with an action must have an image
    slot (v_t = Exec(a_t, v_{t-1}), paper Appendix A), so the action is written into the
    rationale (``"<rationale> Action: ZOOM(0.1, ...)"``), which the parser reads as text;
    steps, answer, input images and the rest of the record are unchanged.
    """
    steps = [
        RecordStep(
            rationale=(
                f"{step.rationale} {TEXT_ONLY_ACTION} {render_action(step.action)}"
                if step.action is not None
                else step.rationale
            )
        )
        for step in record.steps
    ]
    return record.model_copy(update={"steps": steps})


def action_to_json(action: Any) -> str | None:
    return None if action is None else json.dumps(action.model_dump(mode="json"))


def action_from_json(text: str | None) -> Any:
    return None if text is None else ACTION_ADAPTER.validate_json(text)


__all__ = [
    "ANSWER_TYPES",
    "DataError",
    "Record",
    "RecordStep",
    "UNI_SKILLS",
    "UNI_TASKS",
    "UniTask",
    "from_png",
    "image_bytes",
    "image_hash",
    "record_to_trajectory",
    "skills_of",
    "text_cot_trajectory",
    "text_only_record",
    "to_png",
]
