"""Omni-R1-Zero bootstrap: one model-generated image per step of a text-only chain of thought.

Paper (§4, Appendix C): Omni-R1-Zero needs no interleaved supervision. From text-only CoT
(an M3CoT subset), the base model itself draws one image after each reasoning step,
conditioned on everything written so far; the resulting interleaved traces (791 in the
paper) are the PeSFT data of the Zero track.

For each record (steps = ``text_cot``, or the rationales of its image-free steps):

    prefix_t = BOS  prompt(+input images)  instruction  <reasoning-open>
               THOUGHT 1: r_1 \\n BOI v_1 EOI \\n ... THOUGHT t: r_t \\n BOI
    v_t      = exactly H·W image tokens generated after prefix_t, then EOI (forced)

The prefix is cut from :func:`omni_r1.model.packing.pack_trajectory` of the trajectory so
far, so it is token for token what PeSFT later trains on. Generation runs through
:func:`omni_r1.model.generation.generate_interleaved`, whose grammar, given a prompt that
ends inside an open image, allows only image tokens until H·W of them and then only EOI.
Steps are generated in lock-step over a batch of records (step t of every record that has
one, then step t + 1). Each generated image is decoded to PNG by the VQ decoder and the
record is written in the usual template: step = (rationale, action None, image).

Where it differs: the paper samples with Anole's defaults; here sampling follows the
``generation`` section (temperature, top-p) or greedy decoding (``bootstrap.do_sample``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from omni_r1.data.records import Record, RecordStep, from_png, to_png
from omni_r1.model.generation import generate_interleaved
from omni_r1.model.layout import TokenLayout
from omni_r1.model.packing import left_pad_prompts, pack_trajectory
from omni_r1.trajectory import Step, Trajectory

ImageDecoder = Callable[[torch.Tensor], list[Image.Image]]  # codes [N, H*W] -> images


class BootstrapError(RuntimeError):
    """Generation that did not produce one complete image where one was forced."""


def cot_steps(record: Record) -> list[str]:
    """The text-only steps of a record: ``text_cot``, else the rationales of its steps.

    Paper Appendix C.
    """
    if record.text_cot:
        return list(record.text_cot)
    return [step.rationale for step in record.steps if step.image is None and step.action is None]


@dataclass
class Draft:
    """A record being bootstrapped: its steps and the image codes generated so far."""

    record: Record
    steps: list[str]
    input_codes: list[torch.Tensor]
    step_codes: list[torch.Tensor] = field(default_factory=list)
    too_long: bool = False  # the trace so far no longer fits the packing limit

    @property
    def done(self) -> bool:
        return len(self.step_codes) == len(self.steps)

    def trajectory(self, upto: int) -> Trajectory:
        """Question, input images and steps 0..upto, each with an image slot."""
        return Trajectory(
            question=self.record.question,
            choices=tuple(self.record.choices),
            input_images=tuple(self.input_codes),
            steps=tuple(Step(rationale=text, has_image=True) for text in self.steps[: upto + 1]),
            final_answer=self.record.final_answer,
        )


def step_prefix(draft: Draft, layout: TokenLayout, tokenizer: Any, max_length: int) -> torch.Tensor | None:
    """Ids up to and including the BOI of the next step's image [P], or None if too long.

    The next step's image gets placeholder codes only to let the packer lay out the
    sequence; the prefix stops before them.
    """
    step = len(draft.step_codes)
    placeholder = torch.zeros(layout.tokens_per_image, dtype=torch.long)
    codes = [*draft.input_codes, *draft.step_codes, placeholder]
    packed = pack_trajectory(draft.trajectory(step), layout, tokenizer, codes, max_length)
    if packed is None:
        return None
    return packed.input_ids[: packed.image_spans[-1].start]  # [P], ends with BOI


def forced_image_codes(new_tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Codes [H*W] from the tokens generated after a BOI: H·W image tokens, then EOI.

    Raises:
        BootstrapError: the tokens are not one complete image.
    """
    hw = layout.tokens_per_image
    image = new_tokens[:hw]  # [H*W]
    if new_tokens.shape[0] < hw + 1 or not bool(layout.is_image_token(image).all()) or int(new_tokens[hw]) != layout.eoi_id:
        raise BootstrapError(f"expected {hw} image tokens then EOI, got {new_tokens.tolist()[: hw + 1]}")
    return layout.ids_to_codes(image)


@torch.no_grad()
def generate_step_images(
    model: Any,
    layout: TokenLayout,
    prefixes: Sequence[torch.Tensor],
    *,
    sampling: dict[str, Any],
) -> list[torch.Tensor]:
    """One image per prefix (each ends with BOI): codes [H*W] per prefix.

    Args:
        model: the Chameleon model.
        layout: its token layout.
        prefixes: prompt ids [P_i], each ending with BOI.
        sampling: HF generate settings (``do_sample``, ``temperature``, ``top_p``).
    """
    input_ids, attention_mask = left_pad_prompts(prefixes, layout.pad_id)  # [b, P]
    device = next(model.parameters()).device
    sequences = generate_interleaved(
        model, layout, input_ids.to(device), attention_mask.to(device),
        max_new_tokens=layout.tokens_per_image + 1, **sampling,
    )  # fmt: skip  # [b, P + H*W + 1]
    new_tokens = sequences[:, input_ids.shape[1] :].cpu()  # [b, H*W + 1]
    return [forced_image_codes(row, layout) for row in new_tokens]


@dataclass
class BootstrapResult:
    records: list[Record]
    codes: dict[tuple[str, str], torch.Tensor]  # (record id, "input_i" | "step_t") -> [H*W]
    skipped: dict[str, int]  # reason -> count


def bootstrap_records(
    records: Sequence[Record],
    input_codes: Sequence[list[torch.Tensor]],
    model: Any,
    layout: TokenLayout,
    tokenizer: Any,
    decode: ImageDecoder,
    *,
    max_length: int,
    batch_size: int,
    sampling: dict[str, Any],
    source_name: str,
) -> BootstrapResult:
    """Generate one image per text step of every record and assemble interleaved records.

    Omni-R1-Zero, paper Appendix C.

    Args:
        records: text-only CoT records.
        input_codes: codes [H*W] of each record's input images.
        model, layout, tokenizer: the current (base) model.
        decode: codes [N, H*W] → PIL images (the VQ decoder).
        max_length: packing limit; a record whose trace would exceed it is skipped.
        batch_size: records generated together.
        sampling: HF generate settings for the image tokens.
        source_name: the prepared dataset the records came from (kept in ``meta``).

    Returns:
        :class:`BootstrapResult`: the new records, their generated codes, skip counts.
    """
    drafts = [
        Draft(record=record, steps=cot_steps(record), input_codes=list(codes))
        for record, codes in zip(records, input_codes, strict=True)
    ]
    skipped = {"no_text_cot": sum(not draft.steps for draft in drafts)}
    drafts = [draft for draft in drafts if draft.steps]
    while pending := [draft for draft in drafts if not draft.done and not draft.too_long]:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            prefixes = [step_prefix(draft, layout, tokenizer, max_length) for draft in batch]
            ready = [(draft, prefix) for draft, prefix in zip(batch, prefixes, strict=True) if prefix is not None]
            for draft, prefix in zip(batch, prefixes, strict=True):
                draft.too_long = prefix is None
            if ready:
                images = generate_step_images(model, layout, [prefix for _, prefix in ready], sampling=sampling)
                for (draft, _), image in zip(ready, images, strict=True):
                    draft.step_codes.append(image)
    skipped["too_long"] = sum(draft.too_long for draft in drafts)
    drafts = [draft for draft in drafts if not draft.too_long]
    skipped = {reason: count for reason, count in skipped.items() if count}
    assembled = [assemble_record(draft, decode, source_name) for draft in drafts]
    codes = {key: value for draft in drafts for key, value in draft_codes(draft).items()}
    return BootstrapResult(records=assembled, codes=codes, skipped=skipped)


def draft_codes(draft: Draft) -> dict[tuple[str, str], torch.Tensor]:
    """The codes of a finished draft under the keys of ``omni_r1.data.codes``."""
    codes = {(draft.record.id, f"input_{index}"): c for index, c in enumerate(draft.input_codes)}
    codes.update({(draft.record.id, f"step_{index}"): c for index, c in enumerate(draft.step_codes)})
    return codes


def assemble_record(draft: Draft, decode: ImageDecoder, source_name: str) -> Record:
    """The interleaved record of a finished draft: step t = (r_t, no action, decoded v_t)."""
    images = decode(torch.stack(draft.step_codes))  # H*W codes per step -> PIL
    steps = [
        RecordStep(rationale=text, action=None, image=to_png(image))
        for text, image in zip(draft.steps, images, strict=True)
    ]
    record = draft.record
    meta = {**record.meta, "bootstrap": {"source": source_name, "generated_images": len(steps)}}
    return record.model_copy(update={"steps": steps, "skills": [], "meta": meta})


def decoded_images(record: Record) -> list[Image.Image]:
    """The step images of a record as PIL images (a check that every one decodes)."""
    return [from_png(step.image) for step in record.steps if step.image is not None]
