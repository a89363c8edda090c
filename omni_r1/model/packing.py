"""Pack a trajectory into one training sequence: token ids, labels and image targets.

Layout of a packed sequence (official "templated" mode, REFERENCE §3)::

    BOS
    prompt      render_prompt(traj), each input-image slot → BOI + H·W codes + EOI
    "\\n" INSTRUCTION "\\n"
    ─── assistant part (labelled) ───
    <reasoning-open>  body  <reasoning-close>  <answer-open>  "Final Answer: ..."  <answer-close>
    EOS

where ``body`` is ``render_trajectory(traj)`` up to and including the newline before its
``Final Answer:`` line, with each step-image slot → BOI + H·W codes + EOI, and the answer
part is that last line. Dropping the four markers and putting ``IMAGE_SLOT`` back for each
image gives ``render_trajectory(traj)`` again, which is what
:func:`omni_r1.model.generation.decode_interleaved` does with generated ids.

Labels equal the input ids on the assistant part (markers, text, step images' BOI, codes
and EOI, EOS) and -100 on BOS, prompt, input images and instruction (PeSFT's L_CE over
assistant tokens, REFERENCE §4). Each step image is recorded as an :class:`ImageSpan` for
the perception loss L_pe; input images are not. The hidden state that predicts the token
at position t is the one at t-1.

Text is tokenised piece by piece between images with ``add_special_tokens=False``. A
sequence longer than ``max_length`` is dropped whole (never cut, so never inside an image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from omni_r1.model.layout import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    REASONING_CLOSE,
    REASONING_OPEN,
    TokenLayout,
)
from omni_r1.trajectory import (
    FINAL_ANSWER,
    IMAGE_SLOT,
    Trajectory,
    render_prompt,
    render_trajectory,
)

IGNORE_INDEX = -100
OFFICIAL_PREFIX = "You are a helpful assistant.\nUser: "
OFFICIAL_SUFFIX = (
    " Think with images first. The image reasoning process and the final answer are enclosed "
    f"within {REASONING_OPEN} {REASONING_CLOSE} and {ANSWER_OPEN} {ANSWER_CLOSE} XML tags, "
    "respectively.\nAssistant:"
)
INSTRUCTION = (
    "Think with images first. The image reasoning process and answer are enclosed within "
    f"{REASONING_OPEN} {REASONING_CLOSE} and {ANSWER_OPEN} {ANSWER_CLOSE} XML tags, respectively."
)


@dataclass(frozen=True)
class ImageSpan:
    start: int  # position of the first image token in input_ids
    codes: torch.Tensor  # codebook indices [H*W]; input_ids[start : start + H*W] = codes + offset


@dataclass
class PackedSequence:
    input_ids: torch.Tensor  # [L] long
    attention_mask: torch.Tensor  # [L] long, all ones
    labels: torch.Tensor  # [L] long, IGNORE_INDEX outside the assistant part
    image_spans: tuple[ImageSpan, ...]  # generated (step) images only

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class PackingError(ValueError):
    """Image codes that do not fit the trajectory or the layout."""


def _text_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _image_ids(codes: torch.Tensor, layout: TokenLayout, which: str) -> list[int]:
    if codes.shape != (layout.tokens_per_image,):
        raise PackingError(f"{which}: codes shape {tuple(codes.shape)}, expected ({layout.tokens_per_image},)")
    if codes.min() < 0 or codes.max() >= layout.num_codes:
        raise PackingError(f"{which}: codes outside [0, {layout.num_codes})")
    return [layout.boi_id, *layout.codes_to_ids(codes.long()).tolist(), layout.eoi_id]


def _interleave(
    text: str, codes: Sequence[torch.Tensor], layout: TokenLayout, tokenizer: Any, which: str
) -> tuple[list[int], list[int]]:
    """Tokenise ``text``, each IMAGE_SLOT → BOI + codes + EOI; also return image starts."""
    pieces = text.split(IMAGE_SLOT)
    if len(pieces) - 1 != len(codes):
        raise PackingError(f"{which}: {len(pieces) - 1} image slots but {len(codes)} code tensors")
    ids = _text_ids(tokenizer, pieces[0])
    starts: list[int] = []
    for index, (image, piece) in enumerate(zip(codes, pieces[1:], strict=True)):
        starts.append(len(ids) + 1)
        ids += _image_ids(image, layout, f"{which} image {index}")
        ids += _text_ids(tokenizer, piece)
    return ids, starts


def split_image_codes(
    traj: Trajectory, image_codes: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``image_codes`` (input images, then step images) → (input codes, step codes)."""
    n_inputs = len(traj.input_images)
    n_steps = sum(step.has_image for step in traj.steps)
    if len(image_codes) != n_inputs + n_steps:
        raise PackingError(
            f"trajectory has {n_inputs} input + {n_steps} step images, got {len(image_codes)} code tensors"
        )
    return list(image_codes[:n_inputs]), list(image_codes[n_inputs:])


def pack_prompt(
    traj: Trajectory, layout: TokenLayout, tokenizer: Any, input_codes: Sequence[torch.Tensor]
) -> torch.Tensor:
    """BOS, user turn with input images, instruction: the ids a rollout starts from [P]."""
    return pack_prompt_text(render_prompt(traj), layout, tokenizer, input_codes)


def pack_prompt_text(
    prompt_text: str, layout: TokenLayout, tokenizer: Any, input_codes: Sequence[torch.Tensor]
) -> torch.Tensor:
    """:func:`pack_prompt` from the rendered user turn (``IMAGE_SLOT`` per input image) [P]."""
    prompt, _ = _interleave(prompt_text, input_codes, layout, tokenizer, "prompt")
    instruction = _text_ids(tokenizer, f"\n{INSTRUCTION}\n")
    return torch.tensor([layout.bos_id, *prompt, *instruction], dtype=torch.long)


def official_prompt_text(question: str, n_images: int) -> str:
    """The released ``vllm_eval.py`` prompt: system line, user turn, instruction, ``Assistant:``.

    ``<image>`` placeholders in the question are aligned to ``n_images`` as that script does:
    one is put first when the question has none, missing ones are appended after the text,
    extra ones are removed from the end (REFERENCE §8).
    """
    text = question.strip()
    if n_images and IMAGE_SLOT not in text:
        text = IMAGE_SLOT + text
    placeholders = text.count(IMAGE_SLOT)
    if placeholders < n_images:
        text = text.rstrip() + " " + " ".join([IMAGE_SLOT] * (n_images - placeholders))
    elif placeholders > n_images:
        parts = text.split(IMAGE_SLOT)
        text = parts[0] + "".join(IMAGE_SLOT + part for part in parts[1 : n_images + 1])
        text += "".join(parts[n_images + 1 :])
    return OFFICIAL_PREFIX + text + OFFICIAL_SUFFIX


def official_question(traj: Trajectory) -> str:
    """The question text with its lettered choices, without image slots (for the official wrapper)."""
    return render_prompt(Trajectory(question=traj.question, choices=traj.choices, final_answer=""))


def pack_official_prompt(
    question: str, layout: TokenLayout, tokenizer: Any, input_codes: Sequence[torch.Tensor]
) -> torch.Tensor:
    """BOS + :func:`official_prompt_text` with each ``<image>`` → BOI + H·W codes + EOI: [P]."""
    text = official_prompt_text(question, len(input_codes))
    prompt, _ = _interleave(text, input_codes, layout, tokenizer, "prompt")
    return torch.tensor([layout.bos_id, *prompt], dtype=torch.long)


PROMPT_TEMPLATES = ("ours", "official")


def build_prompt(
    template: str, traj: Trajectory, layout: TokenLayout, tokenizer: Any, input_codes: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Prompt ids [P] under ``eval.prompt_template``: ``ours`` (:func:`pack_prompt`) or ``official``."""
    if template == "ours":
        return pack_prompt(traj, layout, tokenizer, input_codes)
    if template == "official":
        return pack_official_prompt(official_question(traj), layout, tokenizer, input_codes)
    raise ValueError(f"unknown prompt template {template!r} (known: {', '.join(PROMPT_TEMPLATES)})")


def _assistant_ids(
    traj: Trajectory, layout: TokenLayout, tokenizer: Any, step_codes: Sequence[torch.Tensor]
) -> tuple[list[int], list[int]]:
    text = render_trajectory(traj)
    cut = text.rfind("\n" + FINAL_ANSWER) + 1  # 0 when there are no steps
    body, answer = text[:cut], text[cut:]
    body_ids, starts = _interleave(body, step_codes, layout, tokenizer, "reasoning")
    ids = [layout.reasoning_open_id, *body_ids, layout.reasoning_close_id, layout.answer_open_id]
    ids += [*_text_ids(tokenizer, answer), layout.answer_close_id, layout.eos_id]
    return ids, [start + 1 for start in starts]  # +1 for the reasoning-open marker


def pack_trajectory(
    traj: Trajectory,
    layout: TokenLayout,
    tokenizer: Any,
    image_codes: Sequence[torch.Tensor],
    max_length: int,
) -> PackedSequence | None:
    """One trajectory → one labelled sequence (layout in the module docstring).

    Args:
        traj: the trajectory.
        layout: the model's token layout.
        tokenizer: its tokenizer (``__call__`` with ``add_special_tokens``).
        image_codes: codebook indices [H*W] per image: input images first, then step images
            in step order.
        max_length: longest sequence kept.

    Returns:
        The :class:`PackedSequence`, or None when it would exceed ``max_length``.

    Raises:
        PackingError: the number or shape of ``image_codes`` does not fit.
    """
    input_codes, step_codes = split_image_codes(traj, image_codes)
    prompt = pack_prompt(traj, layout, tokenizer, input_codes)  # [P]
    assistant, starts = _assistant_ids(traj, layout, tokenizer, step_codes)
    length = prompt.shape[0] + len(assistant)
    if length > max_length:
        return None
    input_ids = torch.cat([prompt, torch.tensor(assistant, dtype=torch.long)])  # [L]
    labels = input_ids.clone()  # [L]
    labels[: prompt.shape[0]] = IGNORE_INDEX
    spans = tuple(
        ImageSpan(start=prompt.shape[0] + start, codes=codes.long())
        for start, codes in zip(starts, step_codes, strict=True)
    )
    return PackedSequence(input_ids, torch.ones_like(input_ids), labels, spans)


def images_as_context(sequence: PackedSequence, layout: TokenLayout) -> PackedSequence:
    """The sequence with its step images turned into context (the study's rendered regime).

    The model still writes BOI (choosing to call the renderer); the H·W image tokens and
    the EOI come from the executor, so they get no cross-entropy label
    (``IGNORE_INDEX``) and no perception target (no image spans).
    """
    inserted = layout.is_image_token(sequence.input_ids) | (sequence.input_ids == layout.eoi_id)  # [L]
    labels = sequence.labels.masked_fill(inserted, IGNORE_INDEX)  # [L]
    return PackedSequence(sequence.input_ids, sequence.attention_mask, labels, ())


def pack_many(
    trajectories: Sequence[Trajectory],
    layout: TokenLayout,
    tokenizer: Any,
    image_codes: Sequence[Sequence[torch.Tensor]],
    max_length: int,
) -> tuple[list[PackedSequence], int]:
    """Pack every trajectory; return the kept sequences and how many were too long."""
    packed: list[PackedSequence] = []
    dropped = 0
    for traj, codes in zip(trajectories, image_codes, strict=True):
        sequence = pack_trajectory(traj, layout, tokenizer, codes, max_length)
        if sequence is None:
            dropped += 1
        else:
            packed.append(sequence)
    return packed, dropped


def collate(batch: Sequence[PackedSequence], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed sequences into a batch.

    Returns:
        ``input_ids`` [B, L] (``pad_id`` on pads), ``attention_mask`` [B, L] (0 on pads),
        ``labels`` [B, L] (-100 on pads), ``image_label_mask`` [B, L] bool (True where the
        label is a step-image token) and ``image_target_codes`` [B, L] long (that token's
        codebook index, -1 elsewhere).
    """
    width = max(len(sequence) for sequence in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, L]
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, L]
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)  # [B, L]
    target_codes = torch.full((len(batch), width), -1, dtype=torch.long)  # [B, L]
    for row, sequence in enumerate(batch):
        n = len(sequence)
        input_ids[row, :n] = sequence.input_ids
        attention_mask[row, :n] = sequence.attention_mask
        labels[row, :n] = sequence.labels
        for span in sequence.image_spans:
            target_codes[row, span.start : span.start + span.codes.shape[0]] = span.codes
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "image_label_mask": target_codes >= 0,
        "image_target_codes": target_codes,
    }


def left_pad_prompts(prompts: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompt ids [P_i] for generation: ``(input_ids [B, P], attention_mask [B, P])``."""
    width = max(prompt.shape[0] for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # [B, P]
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)  # [B, P]
    for row, prompt in enumerate(prompts):
        input_ids[row, width - prompt.shape[0] :] = prompt
        attention_mask[row, width - prompt.shape[0] :] = 1
    return input_ids, attention_mask
