"""PeSFT on HF ``Trainer``: the omni model plus the perception projection W, one loss override.

The objective is the paper's §4.1 (REFERENCE §4), computed by
:func:`omni_r1.training.losses.pesft_loss`:

    L = L_CE + λ·L_pe,   L_pe = (1/|Ω|) Σ_{t∈Ω} ||W·h − E[c_t]||² / D

- L_CE over every assistant token (prompt and input images carry label −100), image tokens
  included, with image-token logits lifted (:mod:`omni_r1.model.logits`).
- L_pe at the label positions of generated (step) images; E is the model's frozen VQ
  codebook ``vqmodel.quantize.embedding`` [K, D]; W = ``nn.Linear(hidden, D)``.
- W is trained with the model by default (``perception.train_projection``); when false it
  stays the fixed random projection the official code uses (never handed to the optimiser).

How it sits on ``Trainer`` (no hand-written loop):

- :class:`PesftModel` is the ``nn.Module`` Trainer sees: the Chameleon model and W, so W is
  in the optimiser, in every checkpoint and in DDP's gradient all-reduce. The VQ model is
  frozen (requires_grad False).
- :class:`PesftTrainer` overrides ``compute_loss`` and extends ``get_batch_samples`` by one
  count: the image label positions of the whole accumulated (and, under DDP, global) batch,
  the normaliser of L_pe, so batch 8 equals batch 2 × 4 accumulation steps for both parts
  (Trainer already does this for L_CE with ``num_items_in_batch``). ``log`` adds the mean
  L_CE, L_pe and tokens/s of the logged steps to Trainer's own logs (kept in
  ``state.log_history``, so they survive a resume).
- :class:`MlflowStepLogger` forwards every log (loss, cross_entropy, perception,
  grad_norm, learning_rate, tokens_per_s) to the active MLflow run, from rank 0.
- Precision by device: bf16 autocast on CUDA when supported, fp32 on CPU. Checkpoints are
  Trainer's safetensors folders (``checkpoint-<k>``, resumable with
  ``resume_from_checkpoint``); :func:`save_pesft_checkpoint` writes the final model in the
  ``load_omni`` layout plus ``projection.safetensors``.

Multi-GPU: one process per GPU through torchrun (or ``accelerate launch``); Trainer sets up
DDP from the environment, e.g.::

    torchrun --nproc_per_node 8 -m omni_r1.cli pesft --track omni_r1

Only rank 0 writes the final checkpoint, metrics and MLflow run. Under DDP the logged
cross_entropy / perception / tokens_per_s are rank 0's share scaled by the world size (an
estimate of the global value; the gradients use the exact global normalisers).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import ModelOutput

from omni_r1.config import PesftConfig
from omni_r1.data.codes import read_codes
from omni_r1.data.records import DataError, Record, record_to_trajectory
from omni_r1.data.storage import read_records
from omni_r1.model.generation import decode_interleaved, generate_interleaved
from omni_r1.model.layout import TokenLayout
from omni_r1.model.logits import forward_logits, with_image_logits
from omni_r1.model.packing import PackedSequence, collate, left_pad_prompts, pack_many, pack_prompt
from omni_r1.training.losses import pesft_loss
from omni_r1.trajectory import parse_trajectory

PROJECTION_FILE = "projection.safetensors"
IMAGE_ITEMS_KEY = "num_image_items_in_batch"  # added to each batch by PesftTrainer.get_batch_samples


# ---------------------------------------------------------------------------------------------
# Data: prepared records + cached codes -> packed sequences -> batches
# ---------------------------------------------------------------------------------------------


def record_image_codes(
    record: Record,
    codes: Mapping[tuple[str, str], torch.Tensor],
    encoded_dir: Path | str,
    *,
    steps: bool = True,
) -> list[torch.Tensor]:
    """Codes [H*W] of a record's images: input images, then step images in step order.

    Args:
        record: the record.
        codes: ``read_codes`` of its dataset.
        encoded_dir: where the codes came from (for the error message).
        steps: False → input images only (prompts).

    Raises:
        DataError: an image has no cached codes (names the codes file, record and key).
    """
    keys = [f"input_{index}" for index in range(len(record.input_images))]
    if steps:
        keys += [f"step_{index}" for index, step in enumerate(record.steps) if step.image is not None]
    missing = [key for key in keys if (record.id, key) not in codes]
    if missing:
        raise DataError(
            str(Path(encoded_dir) / "codes.parquet"), record.id, missing[0], "missing_codes",
            "image has no cached codes; run `omni-r1 encode`",
        )  # fmt: skip
    return [codes[(record.id, key)] for key in keys]


@dataclass
class PackedData:
    sequences: list[PackedSequence]
    dropped: int  # trajectories longer than max_length (never cut)
    records: int


def load_packed_dataset(
    dataset_dir: Path | str,
    encoded_dir: Path | str,
    layout: TokenLayout,
    tokenizer: Any,
    max_length: int,
    limit: int | None = None,
) -> PackedData:
    """Prepared records + cached codes → packed training sequences.

    Args:
        dataset_dir: ``data/prepared/<name>``.
        encoded_dir: ``data/encoded/<name>`` (``codes.parquet`` from the encode stage).
        layout, tokenizer: the model's token layout and tokenizer.
        max_length: longest packed sequence kept; longer ones are dropped and counted.
        limit: read at most this many records (None: all).
    """
    codes = read_codes(encoded_dir)
    trajectories, image_codes = [], []
    for index, record in enumerate(read_records(dataset_dir)):
        if limit is not None and index >= limit:
            break
        trajectories.append(record_to_trajectory(record))
        image_codes.append(record_image_codes(record, codes, encoded_dir))
    sequences, dropped = pack_many(trajectories, layout, tokenizer, image_codes, max_length)
    return PackedData(sequences=sequences, dropped=dropped, records=len(trajectories))


class PackedDataset(torch.utils.data.Dataset):
    """A list of :class:`PackedSequence` as a map-style dataset."""

    def __init__(self, sequences: Sequence[PackedSequence]) -> None:
        if not sequences:
            raise ValueError("PackedDataset: no sequences (all dropped as too long, or an empty dataset)")
        self.sequences = list(sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> PackedSequence:
        return self.sequences[index]


@dataclass(frozen=True)
class PesftCollator:
    """Right-pads packed sequences (:func:`omni_r1.model.packing.collate`)."""

    pad_id: int

    def __call__(self, batch: Sequence[PackedSequence]) -> dict[str, torch.Tensor]:
        return collate(batch, self.pad_id)


def count_image_items(batches: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """Image label positions that L_pe averages over, summed over micro-batches (scalar).

    Position 0 never holds a label, so the count is the same for both alignments.
    """
    return sum((batch["image_label_mask"][:, 1:].sum() for batch in batches), torch.tensor(0))


# ---------------------------------------------------------------------------------------------
# The module Trainer optimises
# ---------------------------------------------------------------------------------------------


def build_projection(hidden_size: int, codebook_dim: int, *, trainable: bool, seed: int) -> nn.Linear:
    """W: ``nn.Linear(hidden, D)``, PyTorch's default init drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projection = nn.Linear(hidden_size, codebook_dim)
    return projection.requires_grad_(trainable)


@dataclass
class PesftOutput(ModelOutput):
    loss: torch.Tensor | None = None  # L_CE + λ·L_pe
    cross_entropy: torch.Tensor | None = None
    perception: torch.Tensor | None = None


class PesftModel(nn.Module):
    """The Chameleon model and the perception projection W, computing the PeSFT loss.

    Args:
        model: a ``ChameleonForConditionalGeneration`` (switched in place to keep image
            logits); its VQ model is frozen here.
        projection: W (``nn.Linear(hidden, D)``); trained iff its parameters require grad.
        layout: the model's token layout.
        perception_weight: λ.
        alignment: ``next_token`` | ``same_position`` (see :mod:`omni_r1.training.losses`).
    """

    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (exact accumulation)
    loss_type = "ForCausalLM"  # Trainer counts labelled items over shifted labels

    def __init__(
        self, model: nn.Module, projection: nn.Linear, layout: TokenLayout, *,
        perception_weight: float, alignment: str,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model = with_image_logits(model)
        self.model.model.vqmodel.requires_grad_(False)
        self.projection = projection
        self.layout = layout
        self.perception_weight = perception_weight
        self.alignment = alignment

    @property
    def codebook(self) -> torch.Tensor:
        """E, the frozen VQ codebook [K, D]."""
        return self.model.model.vqmodel.quantize.embedding.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        num_items_in_batch: int | torch.Tensor | None = None,
        num_image_items_in_batch: int | torch.Tensor | None = None,
    ) -> PesftOutput:
        """PeSFT loss of a batch: ids, mask and labels [B, L]; normalisers of the whole batch."""
        out = forward_logits(self.model, input_ids, attention_mask)  # logits [B, L, V], hidden [B, L, Dh]
        parts = pesft_loss(
            out.logits, labels, out.hidden_states, self.projection, self.codebook, self.layout,
            perception_weight=self.perception_weight, alignment=self.alignment,
            num_items_in_batch=num_items_in_batch, num_image_items_in_batch=num_image_items_in_batch,
        )  # fmt: skip
        return PesftOutput(loss=parts.total, cross_entropy=parts.cross_entropy, perception=parts.perception)


# ---------------------------------------------------------------------------------------------
# Trainer, its step meter and its MLflow logger
# ---------------------------------------------------------------------------------------------


class StepLossMeter(TrainerCallback):
    """Sums L_CE, L_pe and tokens over the micro-batches of each optimiser step.

    ``add`` is called from ``compute_loss``; ``on_step_end`` closes a step; ``drain`` gives
    the means over the steps closed since the last drain, and tokens/s over that time.
    """

    def __init__(self) -> None:
        self._open = torch.zeros(3)  # [cross_entropy, perception, tokens] of the open step
        self._closed = torch.zeros(3)
        self._steps = 0
        self._since = time.perf_counter()

    def add(self, cross_entropy: torch.Tensor, perception: torch.Tensor, tokens: torch.Tensor) -> None:
        parts = torch.stack([cross_entropy.detach().float(), perception.detach().float(), tokens.float()])
        self._open = self._open + parts.cpu()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._since = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._closed += self._open
        self._open = torch.zeros(3)
        self._steps += 1

    def drain(self) -> dict[str, float]:
        """``{"cross_entropy", "perception", "tokens_per_s"}`` since the last drain ({} if none)."""
        if self._steps == 0:
            return {}
        now = time.perf_counter()
        cross_entropy, perception, tokens = (self._closed / torch.tensor([self._steps, self._steps, 1])).tolist()
        values = {
            "cross_entropy": cross_entropy,
            "perception": perception,
            "tokens_per_s": tokens / max(now - self._since, 1e-9),
        }
        self._closed, self._steps, self._since = torch.zeros(3), 0, now
        return values


class MlflowStepLogger(TrainerCallback):
    """Logs every numeric entry of Trainer's logs to the active MLflow run (rank 0 only)."""

    def __init__(self, prefix: str = "pesft/") -> None:
        self.prefix = prefix

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or mlflow.active_run() is None or not logs:
            return
        values = {
            f"{self.prefix}{key}": float(value)
            for key, value in logs.items()
            if isinstance(value, int | float) and math.isfinite(float(value))
        }
        if values:
            mlflow.log_metrics(values, step=state.global_step)


class PesftTrainer(Trainer):
    """``Trainer`` with the PeSFT loss (``compute_loss``) and its L_pe normaliser.

    Args:
        meter: the :class:`StepLossMeter` (also registered as a callback) that collects the
            loss parts for logging.
        *args, **kwargs: as for ``Trainer``; ``model`` is a :class:`PesftModel`.
    """

    def __init__(self, *args: Any, meter: StepLossMeter, **kwargs: Any) -> None:
        callbacks = [*(kwargs.pop("callbacks", None) or []), meter]
        super().__init__(*args, callbacks=callbacks, **kwargs)
        self.meter = meter

    def _process_scale(self, num_items_in_batch: Any) -> int:
        """DDP averages gradients over processes; a loss normalised by a global count is
        multiplied back by the process count (as Trainer's own ``compute_loss`` does)."""
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            return self.accelerator.num_processes
        return 1

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, PesftOutput]:
        """L_CE + λ·L_pe of one micro-batch, normalised by the whole accumulated batch."""
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["labels"],
            num_items_in_batch=num_items_in_batch,
            num_image_items_in_batch=inputs.get(IMAGE_ITEMS_KEY),
        )
        scale = self._process_scale(num_items_in_batch)
        self.meter.add(outputs.cross_entropy * scale, outputs.perception * scale, inputs["attention_mask"].sum() * scale)
        loss = outputs.loss * scale
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        """Trainer's micro-batches of one step, each told the step's image label count."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples:
            image_items = count_image_items(batch_samples).to(device)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                image_items = self.accelerator.gather(image_items).sum()
            for batch in batch_samples:
                batch[IMAGE_ITEMS_KEY] = image_items
        return batch_samples, num_items_in_batch

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer's logs plus the mean L_CE, L_pe and tokens/s of the steps since the last log."""
        if "loss" in logs:
            logs = {**logs, **self.meter.drain()}
        super().log(logs, start_time)


# ---------------------------------------------------------------------------------------------
# Arguments, checkpoints, loss history
# ---------------------------------------------------------------------------------------------


def world_size() -> int:
    """Processes of this run (torchrun / accelerate set ``WORLD_SIZE``; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def use_cuda(device: str) -> bool:
    """``run.device``: auto → CUDA when available; cuda → required; cpu → never."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no CUDA device is available")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def training_arguments(
    section: PesftConfig, output_dir: Path | str, *, device: str, seed: int, progress_bar: bool, **overrides: Any
) -> TrainingArguments:
    """HF ``TrainingArguments`` from the ``pesft`` section of params.yaml.

    Args:
        section: ``cfg.pesft``.
        output_dir: where Trainer writes its resumable ``checkpoint-<k>`` folders.
        device: ``cfg.run.device``.
        seed: ``cfg.run.seed`` (model init, data order).
        progress_bar: show Trainer's tqdm bar (in a terminal).
        **overrides: further ``TrainingArguments`` fields (tests: ``optim``, ``max_steps``).
    """
    cuda = use_cuda(device)
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": section.max_steps,
        "per_device_train_batch_size": section.per_device_batch_size,
        "gradient_accumulation_steps": section.gradient_accumulation_steps,
        "learning_rate": section.learning_rate,
        "lr_scheduler_type": section.lr_scheduler,
        "warmup_steps": section.warmup_steps,
        "weight_decay": section.weight_decay,
        "max_grad_norm": section.max_grad_norm,
        "logging_steps": section.logging_steps,
        "save_strategy": "steps",
        "save_steps": section.save_steps,
        "save_total_limit": section.save_total_limit,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "use_cpu": not cuda,
        "seed": seed,
        "data_seed": seed,
        "report_to": "none",
        "disable_tqdm": not progress_bar,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "optim": "adamw_torch",
        "ddp_backend": None if cuda or world_size() == 1 else "gloo",
        "ddp_find_unused_parameters": False,  # every trainable parameter is in every forward
    }
    values.update(overrides)
    return TrainingArguments(**values)


def build_trainer(
    pesft_model: PesftModel,
    sequences: Sequence[PackedSequence],
    args: TrainingArguments,
    *,
    pad_id: int,
    tokenizer: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> PesftTrainer:
    """A :class:`PesftTrainer` over packed sequences, with its step meter.

    Without a progress bar Trainer's per-step printing is dropped too (the logs still go
    to ``state.log_history`` and the callbacks).
    """
    trainer = PesftTrainer(
        model=pesft_model,
        args=args,
        train_dataset=PackedDataset(sequences),
        data_collator=PesftCollator(pad_id),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        meter=StepLossMeter(),
    )
    if args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    return trainer


def save_projection(projection: nn.Linear, out_dir: Path | str) -> Path:
    """W → ``<out_dir>/projection.safetensors`` (``weight`` [D, Dh], ``bias`` [D])."""
    path = Path(out_dir) / PROJECTION_FILE
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in projection.state_dict().items()}
    save_file(state, str(path), metadata={"trainable": str(projection.weight.requires_grad)})
    return path


def load_projection(model_dir: Path | str, *, trainable: bool) -> nn.Linear:
    """W from ``<model_dir>/projection.safetensors``."""
    state = load_file(str(Path(model_dir) / PROJECTION_FILE))
    codebook_dim, hidden_size = state["weight"].shape
    projection = nn.Linear(hidden_size, codebook_dim)
    projection.load_state_dict(state)
    return projection.requires_grad_(trainable)


def loss_history(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The per-log rows of Trainer's ``state.log_history`` that carry the PeSFT loss parts."""
    keys = ("step", "loss", "cross_entropy", "perception", "grad_norm", "learning_rate", "tokens_per_s")
    return [
        {key: float(row[key]) for key in keys if key in row}
        for row in log_history
        if "cross_entropy" in row
    ]


def window_mean(rows: Sequence[Mapping[str, float]], key: str, window: int, *, last: bool) -> float:
    """Mean of ``key`` over the first (or last) ``window`` rows (NaN when there are none)."""
    values = [row[key] for row in rows if key in row]
    values = values[-window:] if last else values[:window]
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# Held-out format check: does greedy output parse?
# ---------------------------------------------------------------------------------------------


def prompt_ids(
    records: Sequence[Record],
    codes: Mapping[tuple[str, str], torch.Tensor],
    encoded_dir: Path | str,
    layout: TokenLayout,
    tokenizer: Any,
) -> list[torch.Tensor]:
    """Prompt ids [P] (BOS, user turn with input images, instruction) of each record."""
    prompts = []
    for record in records:
        traj = record_to_trajectory(record)
        input_codes = record_image_codes(record, codes, encoded_dir, steps=False)
        prompts.append(pack_prompt(traj, layout, tokenizer, input_codes))
    return prompts


@dataclass
class ParseReport:
    rate: float  # fraction of outputs with no format issue
    texts: list[str]  # decoded outputs, IMAGE_SLOT per generated image
    ok: list[bool]


@torch.no_grad()
def greedy_parse_rate(
    model: nn.Module,
    layout: TokenLayout,
    tokenizer: Any,
    prompts: Sequence[torch.Tensor],
    *,
    max_new_tokens: int,
    max_images: int | None,
    batch_size: int,
) -> ParseReport:
    """Greedy interleaved generation from each prompt; the share that parses with no issue.

    Args:
        model: the trained Chameleon model.
        layout, tokenizer: its token layout and tokenizer.
        prompts: prompt ids [P] (:func:`prompt_ids`).
        max_new_tokens, max_images: the ``generation`` section's budget.
        batch_size: prompts per ``generate`` call (left-padded).

    Returns:
        :class:`ParseReport`; ``ok`` is ``parse_trajectory(text).ok`` of the decoded output.
    """
    model.eval()
    device = next(model.parameters()).device
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = left_pad_prompts(prompts[start : start + batch_size], layout.pad_id)  # [b, P]
        sequences = generate_interleaved(
            model, layout, input_ids.to(device), attention_mask.to(device),
            max_images=max_images, max_new_tokens=max_new_tokens, do_sample=False,
        )  # fmt: skip  # [b, P + N]
        for row in sequences[:, input_ids.shape[1] :].cpu():
            texts.append(decode_interleaved(tokenizer, layout, row)[0])
    ok = [parse_trajectory(text).ok for text in texts]
    return ParseReport(rate=sum(ok) / len(ok) if ok else float("nan"), texts=texts, ok=ok)
