"""Omni-Bench evaluation of one model: prompts → interleaved generation → answers → verdicts.

Paper §5 / Appendix F: every Omni-Bench item is answered with the model's own interleaved
reasoning (text, generated images), the span after ``Final Answer:`` is extracted and a
judge decides it; accuracy is reported per slice (Natural / Structured / Diagrammatic /
Vision-Operational) and as the average over ALL samples, i.e. the slices weighted by their
sample counts (100/200/200/300 on the real bench), not the mean of the four slice values.

Each prediction also carries its perception score (the PeRPO perception reward R_pe of its
generated images, :func:`omni_r1.rewards.perception_score`, NaN without a complete image)
and the mean codebook embedding of its generated images, which the report projects in 2-D
(the paper's Figure 4) without loading the model again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from omni_r1.config import Config, EvalConfig
from omni_r1.data.codes import read_codes
from omni_r1.data.records import UNI_TASKS, Record, from_png
from omni_r1.data.storage import read_records
from omni_r1.data.synthetic import initial_state
from omni_r1.eval.fidelity import fidelity_metrics, row_fields, score_generations
from omni_r1.eval.judges import Judge, JudgeItem, Verdict
from omni_r1.eval.paired import accuracy_intervals
from omni_r1.model.generation import (
    DecodeStepCounter,
    cache_kwargs,
    decode_interleaved,
    generate_interleaved,
    generate_text_only,
)
from omni_r1.model.layout import TokenLayout
from omni_r1.model.packing import build_prompt, left_pad_prompts, pack_official_prompt
from omni_r1.rewards.accuracy import extract_final_answer
from omni_r1.rewards.fidelity import FidelityScores
from omni_r1.rewards.perception import perception_score
from omni_r1.trajectory import Trajectory

if TYPE_CHECKING:
    from omni_r1.rendering import ImageRenderer

AVERAGE_KEY = "average"
PREDICTIONS_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("slice", pa.string()),
        ("question", pa.string()),
        ("gold", pa.string()),
        ("prediction", pa.string()),  # the extracted final answer ("" when none)
        ("response", pa.string()),  # the whole generated text, images as <image>
        ("verdict", pa.bool_()),
        ("score", pa.float64()),  # the judge's score (rule: the verifier's grade)
        ("judge_reason", pa.string()),
        ("judge_malformed", pa.bool_()),
        ("images", pa.int32()),  # complete generated images
        ("perception", pa.float64()),  # R_pe of the generated images, NaN when none
        ("image_codes", pa.list_(pa.list_(pa.int32()))),  # [n_images][H*W]
        ("image_embedding", pa.list_(pa.float32())),  # mean codebook vector [D]; empty when none
        ("fidelity", pa.float64()),  # mean headline fidelity of the scored images, NaN when none
        ("fidelity_status", pa.list_(pa.string())),  # [n_images] scored | no_action | rejected
        ("fidelity_code_agreement", pa.list_(pa.float64())),  # [n_images], NaN unless scored
        ("fidelity_embedding_distance", pa.list_(pa.float64())),  # [n_images], NaN unless scored
        ("fidelity_psnr", pa.list_(pa.float64())),  # [n_images] dB, NaN unless scored with a decoder
    ]
)
NO_FIDELITY_FIELDS = {"fidelity": math.nan, "fidelity_status": [], "fidelity_code_agreement": [],
                      "fidelity_embedding_distance": [], "fidelity_psnr": []}


class BenchError(ValueError):
    """A benchmark record whose cached input-image codes are missing."""


@dataclass(frozen=True)
class BenchItem:
    """One Omni-Bench question with the cached codes of its input images."""

    record: Record
    slice_name: str
    input_codes: tuple[torch.Tensor, ...]  # [H*W] each

    def prompt_trajectory(self) -> Trajectory:
        """The question part of the record (its gold trace is not shown to the model)."""
        record = self.record
        return Trajectory(
            question=record.question,
            choices=tuple(record.choices),
            input_images=tuple(from_png(png) for png in record.input_images),
            final_answer="",
        )


@dataclass(frozen=True)
class Generation:
    """One generated response."""

    response_ids: torch.Tensor  # [N] new tokens (EOS and pads included)
    text: str  # trajectory text, <image> per complete image
    codes: torch.Tensor  # [n_images, H*W] codebook indices of the complete images


def slice_of(record: Record) -> str:
    return str(record.meta.get("omnibench_slice", record.uni_task))


def load_bench(dataset_dir: Path | str, encoded_dir: Path | str, max_per_slice: int) -> list[BenchItem]:
    """Omni-Bench records with their cached input-image codes, in file order.

    Args:
        dataset_dir: ``data/prepared/omnibench``.
        encoded_dir: ``data/encoded/omnibench`` (``codes.parquet``).
        max_per_slice: keep the first n records of each slice; 0 keeps all.

    Raises:
        BenchError: an input image has no cached codes (names the file, record and image).
    """
    codes = read_codes(encoded_dir)
    items: list[BenchItem] = []
    taken: dict[str, int] = {}
    for record in read_records(dataset_dir):
        slice_name = slice_of(record)
        if max_per_slice and taken.get(slice_name, 0) >= max_per_slice:
            continue
        taken[slice_name] = taken.get(slice_name, 0) + 1
        inputs = []
        for index in range(len(record.input_images)):
            key = (record.id, f"input_{index}")
            if key not in codes:
                raise BenchError(
                    f"{Path(encoded_dir) / 'codes.parquet'}: record {record.id!r}, field "
                    f"'input_images[{index}]': no cached codes; run `omni-r1 encode`"
                )
            inputs.append(codes[key])
        items.append(BenchItem(record, slice_name, tuple(inputs)))
    return items


def decoding_kwargs(evaluation: EvalConfig) -> dict[str, Any]:
    """HF ``generate`` arguments of ``eval.sampling``: greedy, or ``eval.temperature/top_p``."""
    if evaluation.sampling == "greedy":
        return {"max_new_tokens": evaluation.max_new_tokens, "do_sample": False}
    if evaluation.sampling == "sample":
        return {
            "max_new_tokens": evaluation.max_new_tokens,
            "do_sample": True,
            "temperature": evaluation.temperature,
            "top_p": evaluation.top_p,
        }
    raise ValueError(f"unknown sampling {evaluation.sampling!r} (known: greedy, sample)")


def protocol_of(evaluation: EvalConfig, judge_name: str) -> dict[str, Any]:
    """The evaluation protocol a number was produced under, as written beside it."""
    return {
        "prompt_template": evaluation.prompt_template,
        "decoding": evaluation.decoding,
        "sampling": evaluation.sampling,
        "temperature": evaluation.temperature if evaluation.sampling == "sample" else None,
        "top_p": evaluation.top_p if evaluation.sampling == "sample" else None,
        "max_new_tokens": evaluation.max_new_tokens,
        "judge": judge_name,
    }


@torch.no_grad()
def generate_responses(
    omni: Any,
    prompts: Sequence[torch.Tensor],
    generate_kwargs: dict[str, Any],
    max_images: int | None,
    batch_size: int,
    decoding: str,
    on_items: Callable[[int], None] | None = None,
    on_tokens: Callable[[int], None] | None = None,
    renderer: ImageRenderer | None = None,
    starts: Sequence[tuple[Any, Any]] | None = None,
) -> list[Generation]:
    """Generation for every prompt, ``batch_size`` prompts per call.

    Args:
        omni: holds ``model``, ``tokenizer`` and ``layout``.
        prompts: prompt ids [P_i] (from :func:`omni_r1.model.packing.build_prompt`).
        generate_kwargs: HF ``generate`` arguments (see :func:`decoding_kwargs`).
        max_images: most images per answer (interleaved only).
        batch_size: prompts per ``generate`` call (left-padded together).
        on_items: called with the number of prompts answered by each call (progress).
        on_tokens: called with the decoding step reached inside each call (progress).
        decoding: ``interleaved`` (the grammar of :func:`generate_interleaved`) or ``text_only``
            (image-token logits masked, :func:`generate_text_only`).
        renderer, starts: interleaved only; the executor draws every image from each prompt's
            v_0 and task state (``starts``), the study's rendered regime.
    """
    if decoding not in ("interleaved", "text_only"):
        raise ValueError(f"unknown decoding {decoding!r} (known: interleaved, text_only)")
    layout: TokenLayout = omni.layout
    device = next(omni.model.parameters()).device
    generations: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = left_pad_prompts(prompts[start : start + batch_size], layout.pad_id)
        streamer = {"streamer": DecodeStepCounter(on_tokens)} if on_tokens is not None else {}
        if decoding == "interleaved":
            tool = renderer.tool(starts[start : start + batch_size]) if renderer is not None else None
            sequences = generate_interleaved(
                omni.model, layout, input_ids.to(device), attention_mask.to(device),
                max_images=max_images, image_tool=tool, **generate_kwargs, **streamer,
            )  # [b, P + N]  # fmt: skip
        else:
            sequences = generate_text_only(
                omni.model, layout, input_ids.to(device), attention_mask.to(device), **generate_kwargs, **streamer
            )  # [b, P + N]
        for row in sequences[:, input_ids.shape[1] :].cpu():  # [N]
            text, codes = decode_interleaved(omni.tokenizer, layout, row)
            generations.append(Generation(row, text, codes))
        if on_items is not None:
            on_items(input_ids.shape[0])
    return generations


def response_mask(response_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on every token up to and including the first EOS, 0 after it: [B, N] → [B, N]."""
    is_eos = (response_ids == eos_id).long()  # [B, N]
    after_eos = (is_eos.cumsum(-1) - is_eos) > 0  # [B, N] strictly after the first EOS
    return (~after_eos).long()


def pad_responses(generations: Sequence[Generation], pad_id: int) -> torch.Tensor:
    """Right-pad response ids into [B, N]."""
    width = max((g.response_ids.shape[0] for g in generations), default=0)
    batch = torch.full((len(generations), max(width, 1)), pad_id, dtype=torch.long)  # [B, N]
    for row, generation in enumerate(generations):
        batch[row, : generation.response_ids.shape[0]] = generation.response_ids
    return batch


def perception_scores(
    generations: Sequence[Generation], codebook: torch.Tensor, layout: TokenLayout, cfg: Config
) -> list[float]:
    """R_pe of every response (``reward.tau``, ``perception_map``, ``aggregation``); NaN without an image."""
    if not generations:
        return []
    ids = pad_responses(generations, layout.pad_id)  # [B, N]
    scores = perception_score(
        ids, response_mask(ids, layout.eos_id), codebook.detach().float().cpu(), layout,
        tau=cfg.reward.tau, score_map=cfg.reward.perception_map, aggregation=cfg.reward.aggregation,
    )  # fmt: skip
    return [float(value) for value in scores.score]


def image_embedding(codes: torch.Tensor, codebook: torch.Tensor) -> list[float]:
    """Mean codebook vector over every position of every generated image: [n, H*W] → [D]."""
    if codes.numel() == 0:
        return []
    vectors = codebook.detach().float().cpu()[codes.long()]  # [n, H*W, D]
    return vectors.mean(dim=(0, 1)).tolist()


def slice_accuracy(slices: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
    """Accuracy per slice and the sample-weighted ``average`` (over all samples).

    Slices come out in Uni-Task order, then any other slice name; a slice without samples is
    left out. ``average`` = correct / total, so a slice weighs its sample count.
    """
    if len(slices) != len(correct):
        raise ValueError(f"{len(slices)} slices for {len(correct)} verdicts")
    totals: dict[str, list[int]] = {}
    for slice_name, ok in zip(slices, correct, strict=True):
        totals.setdefault(slice_name, [0, 0])
        totals[slice_name][0] += int(bool(ok))
        totals[slice_name][1] += 1
    order = [s for s in UNI_TASKS if s in totals] + sorted(set(totals) - set(UNI_TASKS))
    metrics = {name: totals[name][0] / totals[name][1] for name in order}
    metrics[AVERAGE_KEY] = sum(int(bool(ok)) for ok in correct) / len(correct) if correct else 0.0
    return metrics


def prediction_rows(
    items: Sequence[BenchItem],
    generations: Sequence[Generation],
    verdicts: Sequence[Verdict],
    perception: Sequence[float],
    codebook: torch.Tensor,
    fidelity: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per item in :data:`PREDICTIONS_SCHEMA`.

    ``fidelity``: per-item columns from :func:`omni_r1.eval.fidelity.row_fields`; None leaves
    them empty (NaN, no image statuses).
    """
    rows = []
    fidelity = fidelity if fidelity is not None else [NO_FIDELITY_FIELDS] * len(items)
    for item, generation, verdict, score, fields in zip(items, generations, verdicts, perception, fidelity, strict=True):
        rows.append(
            {
                "record_id": item.record.id,
                "slice": item.slice_name,
                "question": item.record.question,
                "gold": item.record.final_answer,
                "prediction": extract_final_answer(generation.text) or "",
                "response": generation.text,
                "verdict": verdict.correct,
                "score": verdict.score,
                "judge_reason": verdict.reason,
                "judge_malformed": verdict.malformed,
                "images": int(generation.codes.shape[0]),
                "perception": score,
                "image_codes": generation.codes.int().tolist(),
                "image_embedding": image_embedding(generation.codes, codebook),
                **fields,
            }
        )
    return rows


def item_prompt(item: BenchItem, omni: Any, template: str) -> torch.Tensor:
    """Prompt ids [P] of one item under ``eval.prompt_template``.

    A record read from the released Omni-Bench keeps its question as published (``<image>``
    placeholders included) in ``meta["official_question"]``; the official wrapper uses it.
    """
    official = item.record.meta.get("official_question")
    if template == "official" and official:
        return pack_official_prompt(official, omni.layout, omni.tokenizer, item.input_codes)
    return build_prompt(template, item.prompt_trajectory(), omni.layout, omni.tokenizer, item.input_codes)


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced."""

    items: list[BenchItem]
    generations: list[Generation]
    verdicts: list[Verdict]
    rows: list[dict[str, Any]]
    metrics: dict[str, float]  # accuracy per slice + average
    accuracy_intervals: dict[str, dict[str, Any]]  # slice/average → mean, low, high, items
    fidelity: dict[str, Any]  # the "fidelity" block of the metrics file (omni_r1.eval.fidelity)
    fidelity_scores: FidelityScores  # per generated image, with the executor's renderings


def codebook_of(omni: Any) -> torch.Tensor:
    """The frozen VQ codebook E [K, D] of a Chameleon model."""
    return omni.model.model.vqmodel.quantize.embedding.weight


def evaluate_items(
    omni: Any,
    items: Sequence[BenchItem],
    cfg: Config,
    judge: Judge,
    on_items: Callable[[int], None] | None = None,
    on_tokens: Callable[[int], None] | None = None,
    renderer: ImageRenderer | None = None,
) -> EvalResult:
    """Generate, judge and score every item.

    Args:
        omni: the model (``model``, ``tokenizer``, ``layout``).
        items: benchmark items (see :func:`load_bench`).
        cfg: ``eval`` (decoding, batch size, KV cache), ``generation`` (budget, image cap, sampling),
            ``reward`` (perception score), ``executor``, ``fidelity``, ``intervals`` and
            ``run.seed`` (functional-image fidelity, :mod:`omni_r1.eval.fidelity`, and the
            bootstrap intervals of the accuracies, :func:`omni_r1.eval.paired.accuracy_intervals`).
        judge: decides each prediction.
        on_items: called with the number of items answered by each generate call (progress).
        on_tokens: called with the decoding step reached inside each generate call (progress).
        renderer: the executor draws every image (the study's rendered regime); None: the model does.
    """
    prompts = [item_prompt(item, omni, cfg.eval.prompt_template) for item in items]  # [P_i] each
    starts = [(from_png(item.record.input_images[0]) if item.record.input_images else None,
               initial_state(item.record)) for item in items] if renderer is not None else None  # fmt: skip
    generations = generate_responses(
        omni, prompts, {**decoding_kwargs(cfg.eval), **cache_kwargs(cfg.eval.kv_cache)},
        cfg.generation.max_images_per_answer, cfg.eval.batch_size, cfg.eval.decoding, on_items, on_tokens,
        renderer, starts,
    )  # fmt: skip
    judged = [
        JudgeItem(gold=item.record.final_answer, response=g.text, choices=tuple(item.record.choices))
        for item, g in zip(items, generations, strict=True)
    ]
    verdicts = judge(judged)
    codebook = codebook_of(omni)  # [K, D]
    perception = perception_scores(generations, codebook, omni.layout, cfg)
    fidelity = score_generations(omni, items, generations, cfg)
    rows = prediction_rows(items, generations, verdicts, perception, codebook, row_fields(fidelity))
    slices = [i.slice_name for i in items]
    correct = [v.correct for v in verdicts]
    intervals = accuracy_intervals(slices, correct, cfg.intervals.resamples, cfg.intervals.confidence, cfg.run.seed)
    return EvalResult(
        list(items), generations, verdicts, rows, slice_accuracy(slices, correct), intervals,
        fidelity_metrics(slices, fidelity, cfg), fidelity,
    )  # fmt: skip


def write_predictions(rows: Sequence[dict[str, Any]], path: Path | str) -> Path:
    """Write the predictions parquet (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(pa.Table.from_pylist(list(rows), schema=PREDICTIONS_SCHEMA), tmp)
    tmp.replace(path)
    return path


def read_predictions(path: Path | str) -> list[dict[str, Any]]:
    return pq.read_table(Path(path)).to_pylist()
