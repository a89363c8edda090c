"""Stage ``pesft``: perception-aligned SFT of the base model, one run per track.

What it does (paper §4.1, REFERENCE §4): trains the omni model (image logits lifted) with

    L = L_CE (assistant tokens, prompt masked) + λ·L_pe (generated-image label positions)

on HF ``Trainer`` (:mod:`omni_r1.training.pesft`), from the base model of ``load_base`` (the
``base`` stage's tiny base that can draw, or Anole with ``model.source: pretrained``):

- ``--track omni_r1``: the interleaved training set (``pesft.datasets.omni_r1``; paper:
  Zebra-CoT; embedded default: synthetic Uni-Tasks).
- ``--track omni_r1_zero``: the bootstrapped set (``zero_bootstrap``; paper: 791 samples
  bootstrapped from text-only M3CoT by the base model).

Data: prepared records + cached codes → packed sequences (too-long ones dropped, counted).
Writes ``checkpoints/<track>/pesft/`` (``load_omni`` layout + ``projection.safetensors``
+ ``trainer_state.json``), ``metrics/pesft_<track>.json`` and an MLflow run
``pesft-<track>`` with per-step cross_entropy, perception, grad_norm, learning_rate,
tokens_per_s and the checkpoint (artifacts, or its S3 URI when ``storage.s3_uri`` is set).
The DVC-tracked files hold no wall-clock values (``train_runtime``, ``tokens_per_s`` are
stripped from the saved Trainer state; ``train_seconds`` goes to MLflow only), so the same
inputs and seed give the same bytes.

``parse_rate`` is measured on held-out prompts (``pesft.parse_eval_dataset``, the
Omni-Bench set by default, never trained on): the share of greedy outputs
(``generate_interleaved``, ``generation.max_new_tokens``) that ``parse_trajectory`` reads
with no format issue. ``ce_first`` / ``ce_last`` (and ``perception_*``) are means over the
first / last ``pesft.loss_window`` logged steps.

Resume: Trainer checkpoints go to ``checkpoints/<track>/pesft_resume/`` (outside the DVC
output, deleted after success); a rerun after an interruption resumes from the latest complete
one (a checkpoint cut short while Trainer wrote it is removed) when the configuration and data
are unchanged, else starts over. The final folder is written atomically with ``checksums.json``.

Multi-GPU: ``torchrun --nproc_per_node 8 -m omni_r1.cli pesft --track omni_r1``; rank 0
writes the checkpoint, metrics and MLflow run.

Where it differs from the paper: the tiny default trains a small model, pre-trained only on
template image <-> text pairs by the ``base`` stage, for a few
hundred steps at a large learning rate (paper: Anole-7B, lr 1e-5, 1 epoch, ZeRO-2, bf16,
max length 5100); W is trained by default (official code: a fixed random projection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from omni_r1.config import Config
from omni_r1.console import StageProgress
from omni_r1.data.codes import read_codes
from omni_r1.data.storage import MANIFEST, read_records
from omni_r1.model.loading import load_base, load_omni, save_omni, write_folder_atomically
from omni_r1.model.packing import IGNORE_INDEX
from omni_r1.model.packing import images_as_context as images_as_context_of
from omni_r1.tracking import log_checkpoint, log_dataset_manifest, stage_run
from omni_r1.training.pesft import (
    MlflowStepLogger,
    PesftModel,
    StepProgress,
    build_projection,
    build_trainer,
    decoder_layer_classes,
    enable_gradient_checkpointing,
    greedy_parse_rate,
    is_main_process,
    load_packed_dataset,
    loss_history,
    prompt_ids,
    save_projection,
    training_arguments,
    window_mean,
)

RESUME_KEY = "resume_key.json"
TRAINER_STATE = "trainer_state.json"


@dataclass(frozen=True)
class PesftPaths:
    dataset: Path  # data/prepared/<name>
    encoded: Path  # data/encoded/<name>
    out: Path  # checkpoints/<track>/pesft
    resume: Path  # checkpoints/<track>/pesft_resume
    metrics: Path  # metrics/pesft_<track>.json

    @classmethod
    def of(cls, cfg: Config, track: str) -> PesftPaths:
        if track not in cfg.pesft.datasets:
            raise ValueError(f"unknown track {track!r}; known (pesft.datasets): {', '.join(cfg.pesft.datasets)}")
        name = cfg.pesft.datasets[track]
        root = Path(cfg.paths.checkpoints_dir) / track
        return cls(
            dataset=Path(cfg.data.prepared_dir) / name,
            encoded=Path(cfg.data.encoded_dir) / name,
            out=root / "pesft",
            resume=root / "pesft_resume",
            metrics=Path(cfg.paths.metrics_dir) / f"pesft_{track}.json",
        )


def fingerprint(cfg: Config, dataset_dir: Path) -> str:
    """Hash of what a resumed run must share with the interrupted one: config and data."""
    digest = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    digest.update((dataset_dir / MANIFEST).read_bytes())
    return digest.hexdigest()


def complete_trainer_checkpoints(resume_dir: Path) -> list[Path]:
    """``checkpoint-<n>`` folders of ``resume_dir`` by n that hold Trainer's state file.

    Trainer writes a checkpoint in place and its ``trainer_state.json`` last, so a folder
    without it was cut short by a kill and must not be resumed from.
    """
    found = []
    for path in resume_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def resumable_checkpoint(resume_dir: Path, key: str) -> str | None:
    """The latest complete Trainer checkpoint in ``resume_dir`` if it was written under ``key``.

    Half-written checkpoint folders (killed while saving) are removed.
    """
    key_file = resume_dir / RESUME_KEY
    if not (key_file.exists() and json.loads(key_file.read_text(encoding="utf-8")).get("key") == key):
        return None
    complete = complete_trainer_checkpoints(resume_dir)
    for path in resume_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if path not in complete:
            shutil.rmtree(path)
    return str(complete[-1]) if complete else None


def remove_resume_dir(resume_dir: Path) -> None:
    """Delete the resume folder after success: renamed away first (one atomic step), then removed.

    Deleting it in place could be cut short by a kill, leaving a checkpoint whose
    ``trainer_state.json`` survived its weights; the next run would resume from it.
    """
    if not resume_dir.exists():
        return
    doomed = resume_dir.parent / f".{resume_dir.name}.deleted-{os.getpid()}"
    os.replace(resume_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def reset_resume_dir(resume_dir: Path, key: str) -> None:
    """Clear a stale resume folder and mark it with ``key``."""
    shutil.rmtree(resume_dir, ignore_errors=True)
    resume_dir.mkdir(parents=True)
    (resume_dir / RESUME_KEY).write_text(json.dumps({"key": key}), encoding="utf-8")


def held_out_prompts(cfg: Config, omni: Any) -> list[Any]:
    """Prompt ids of the first ``pesft.parse_eval_prompts`` records of the held-out set."""
    name = cfg.pesft.parse_eval_dataset
    dataset_dir, encoded_dir = Path(cfg.data.prepared_dir) / name, Path(cfg.data.encoded_dir) / name
    records = []
    for record in read_records(dataset_dir):
        if len(records) >= cfg.pesft.parse_eval_prompts:
            break
        records.append(record)
    return prompt_ids(records, read_codes(encoded_dir), encoded_dir, omni.layout, omni.tokenizer)


TIMING_KEYS = ("tokens_per_s", "train_runtime", "train_samples_per_second", "train_steps_per_second")
# Trainer's closing ``train_loss`` averages only the steps run since the last resume, so a
# resumed run would store another value than an uninterrupted one (the per-step losses stay).
PER_PROCESS_KEYS = ("train_loss",)


def timing_free_state(state: dict[str, Any]) -> str:
    """Trainer's state (``dataclasses.asdict``) as JSON without wall-clock entries and without
    values that depend on where a run was resumed, so the DVC output is byte-stable."""
    state = dict(state)
    dropped = TIMING_KEYS + PER_PROCESS_KEYS
    state["log_history"] = [
        {key: value for key, value in entry.items() if key not in dropped} for entry in state["log_history"]
    ]
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def gathered_state(trainer: Any, strategy: str) -> dict[str, Any] | None:
    """Under FSDP, the full ``PesftModel`` state dict (every rank must call; rank 0 gets it)."""
    if strategy != "fsdp" or not trainer.is_fsdp_enabled:
        return None
    return trainer.accelerator.get_state_dict(trainer.model)


def save_final(omni: Any, projection: Any, trainer: Any, out_dir: Path, state: dict[str, Any] | None = None) -> None:
    """``load_omni`` folder + ``projection.safetensors`` + Trainer's state (log history, no timings).

    Written atomically with ``checksums.json`` (:func:`write_folder_atomically`): a kill while
    saving leaves the previous checkpoint in place, never a half-written or missing one.
    ``state``: the gathered ``PesftModel`` state dict when training was sharded (FSDP).
    """

    def write(folder: Path) -> None:
        if state is None:
            save_omni(omni, folder)
        else:
            save_omni(omni, folder, {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
            projection.load_state_dict({k.removeprefix("projection."): v for k, v in state.items() if k.startswith("projection.")})
        save_projection(projection, folder)
        (folder / TRAINER_STATE).write_text(timing_free_state(dataclasses.asdict(trainer.state)), encoding="utf-8")

    write_folder_atomically(out_dir, write)


def summary_metrics(cfg: Config, history: list[dict[str, float]], **extra: Any) -> dict[str, Any]:
    window = cfg.pesft.loss_window
    return {
        "ce_first": window_mean(history, "cross_entropy", window, last=False),
        "ce_last": window_mean(history, "cross_entropy", window, last=True),
        "perception_first": window_mean(history, "perception", window, last=False),
        "perception_last": window_mean(history, "perception", window, last=True),
        **extra,
    }


def labelled_tokens(sequences: Any) -> int:
    """Tokens with a cross-entropy label over the sequences (what one pass trains on)."""
    return sum(int((sequence.labels != IGNORE_INDEX).sum()) for sequence in sequences)


def run(cfg: Config, track: str, images_as_context: bool = False) -> dict[str, Any]:
    """Train PeSFT on one track; return the metrics written to ``metrics/pesft_<track>.json``.

    ``images_as_context``: step images are context, not targets (the study's rendered
    regime, :func:`omni_r1.model.packing.images_as_context`).
    """
    paths = PesftPaths.of(cfg, track)
    main = is_main_process()
    if not (paths.dataset / MANIFEST).exists():
        hint = "omni-r1 bootstrap" if track == "omni_r1_zero" else "omni-r1 prepare"
        raise FileNotFoundError(f"{paths.dataset}: no prepared dataset; run `{hint}`")
    run_context = stage_run(cfg, f"pesft-{track}") if main else contextlib.nullcontext()
    with run_context:
        omni = load_base(cfg)
        data = load_packed_dataset(
            paths.dataset, paths.encoded, omni.layout, omni.tokenizer, cfg.packing.max_length
        )
        if images_as_context:
            data.sequences = [images_as_context_of(sequence, omni.layout) for sequence in data.sequences]
        trained_tokens = labelled_tokens(data.sequences)
        config = omni.model.config
        projection = build_projection(
            config.hidden_size, config.vq_config.embed_dim,
            trainable=cfg.perception.train_projection, seed=cfg.run.seed,
        )  # fmt: skip
        pesft_model = PesftModel(
            omni.model, projection, omni.layout,
            perception_weight=cfg.perception.weight, alignment=cfg.perception.alignment,
        )  # fmt: skip
        key = fingerprint(cfg, paths.dataset)
        resume = resumable_checkpoint(paths.resume, key)  # every rank resumes from the same one
        if main and resume is None:
            reset_resume_dir(paths.resume, key)
        enable_gradient_checkpointing(pesft_model, cfg.pesft.strategy, cfg.pesft.gradient_checkpointing)
        args = training_arguments(
            cfg.pesft, paths.resume, device=cfg.run.device, seed=cfg.run.seed, progress_bar=False,
            wrap_classes=decoder_layer_classes(omni.model),
        )  # fmt: skip  # progress through StepProgress, in a terminal and in logs alike
        trainer = build_trainer(
            pesft_model, data.sequences, args, pad_id=omni.layout.pad_id, tokenizer=omni.tokenizer,
            callbacks=[MlflowStepLogger(), StepProgress(f"pesft {track}", cfg.console.log_every_s)],
        )  # fmt: skip
        if main:
            log_dataset_manifest(paths.dataset / MANIFEST, cfg.pesft.datasets[track])
            held_out = cfg.pesft.parse_eval_dataset
            log_dataset_manifest(
                Path(cfg.data.prepared_dir) / held_out / MANIFEST, held_out, context="evaluation"
            )
            mlflow.log_metrics({"pesft.records": data.records, "pesft.dropped_sequences": data.dropped})
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume)
        train_seconds = time.perf_counter() - started
        state = gathered_state(trainer, cfg.pesft.strategy)
        if not main:
            return {}

        save_final(omni, projection, trainer, paths.out, state)
        if state is not None:  # sharded parameters: generate from the saved, whole checkpoint
            omni = load_omni(cfg, model_dir=paths.out)
        title = f"pesft {track} held-out parse check"
        with StageProgress(title, None, unit="decoding steps", every_s=cfg.console.log_every_s) as progress:
            parse = greedy_parse_rate(
                omni.model, omni.layout, omni.tokenizer, held_out_prompts(cfg, omni),
                max_new_tokens=cfg.generation.max_new_tokens, max_images=cfg.generation.max_images_per_answer,
                batch_size=cfg.pesft.parse_eval_batch_size, on_tokens=lambda _: progress.update(advance=1),
            )  # fmt: skip
        history = loss_history(trainer.state.log_history)
        metrics = summary_metrics(
            cfg, history,
            parse_rate=parse.rate, parse_eval_prompts=len(parse.ok), parse_eval_dataset=cfg.pesft.parse_eval_dataset,
            steps=trainer.state.global_step, sequences=len(data.sequences), dropped_sequences=data.dropped,
            resumed_from=resume, labelled_tokens_per_sequence=trained_tokens / max(1, len(data.sequences)),
        )  # fmt: skip
        paths.metrics.parent.mkdir(parents=True, exist_ok=True)
        paths.metrics.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        mlflow.log_metrics({f"pesft.{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        mlflow.log_metrics({  # wall-clock timings: MLflow only, never in a DVC-tracked file
            "pesft.train_seconds": train_seconds,
            "pesft.tokens_per_s": window_mean(history, "tokens_per_s", len(history), last=True),
        })
        mlflow.log_dict({"texts": parse.texts, "ok": parse.ok}, "pesft/parse_eval.json")
        log_checkpoint(paths.out, f"checkpoints/{track}/pesft", cfg.storage)
        remove_resume_dir(paths.resume)
    return metrics
