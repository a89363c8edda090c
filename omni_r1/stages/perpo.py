"""Stage ``perpo``: perception-calibrated GRPO from the PeSFT checkpoint (paper §4.2, Table 6).

What it does: loads ``checkpoints/<track>/pesft/`` twice, as the policy and as the frozen
reference; packs the prompts of ``<data.prepared_dir>/<perpo.dataset>`` with the cached codes
of their input images (``<data.encoded_dir>/<perpo.dataset>``); runs ``perpo.max_steps`` steps of
:class:`omni_r1.training.perpo.PerpoTrainer` (n interleaved samples per prompt, reward
R = combination of accuracy, format and perception, DAPO group filter with refill,
PPO-clip with clip-higher, k3 KL to the reference, entropy bonus); saves
``checkpoints/<track>/perpo/step_<k>/`` at ``perpo.save_steps``, each loadable by
``load_omni``; writes ``metrics/perpo_<track>.json``. MLflow gets per-step metrics (reward
and components, kept-group fraction, KL, entropy, clip fraction, lengths, images per
response, tokens/s), an HTML gallery of sampled trajectories per checkpoint, and the
checkpoints.

Variants (``--variant``): ``default``; ``no_perception`` sets the perception weight to 0
(the paper's "w/o PeReward" ablation, Table 4) and writes
``checkpoints/<track>/perpo_no_perception/`` and ``metrics/perpo_no_perception.json``
(``metrics/perpo_<track>_no_perception.json`` off the Zero track).

Resume: besides the sweep folders, every ``perpo.resume_every`` steps a resumable checkpoint
is written to ``checkpoints/<track>/perpo_resume/`` (``<out folder>_resume``; only the latest
is kept, it is not a DVC output, and it is removed when the run completes), so a kill loses
fewer than ``resume_every`` steps. When either holds a checkpoint written under the same
configuration hash (params sections, track, variant and the starting weights' sha256),
training continues from the latest one with its optimizer, scheduler, RNG and prompt cursor
(so the DVC stage should keep its outputs: ``persist: true``); a checkpoint from another
configuration is removed and training starts over. Every checkpoint carries
``checksums.json``, verified before it is resumed from.

Where it differs from the paper: the official run uses verl on GPUs (vLLM rollouts,
FSDP); here the same loss and rewards run in-process on HF ``generate``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import torch

from omni_r1.config import Config
from omni_r1.console import StageProgress
from omni_r1.data.codes import read_codes
from omni_r1.data.storage import MANIFEST, read_records
from omni_r1.model.images import decode_codes
from omni_r1.model.loading import CHECKSUMS, load_omni
from omni_r1.rendering import image_renderer
from omni_r1.tracking import file_sha256, log_checkpoint, log_dataset_manifest, stage_run
from omni_r1.training.checkpoint import (
    MODEL_INDEX,
    MODEL_WEIGHTS,
    OPTIMIZER_META,
    OPTIMIZER_TENSORS,
    RNG_TENSORS,
    TRAINER_STATE,
    latest_checkpoint,
)
from omni_r1.training.perpo import PerpoTrainer, config_fingerprint
from omni_r1.training.perpo_report import rollout_gallery_html, summary_metrics
from omni_r1.training.rollout import Response, build_prompts, reward_scorer

# step metrics shown beside the progress bar: reward, accuracy, KL to the reference
PROGRESS_POSTFIX = {"reward/mean": "reward", "reward/accuracy": "accuracy", "actor/kl_loss": "KL"}
# Files of the starting checkpoint that a PeRPO checkpoint does not inherit.
NOT_INHERITED = {
    CHECKSUMS,
    MODEL_WEIGHTS,
    MODEL_INDEX,
    TRAINER_STATE,
    OPTIMIZER_TENSORS,
    OPTIMIZER_META,
    RNG_TENSORS,
}
NOT_INHERITED_PREFIXES = ("model-", "optimizer", "scheduler", "rng_state", "training_args")


def no_perception(cfg: Config) -> Config:
    """The "w/o PeReward" ablation: R without the perception term."""
    return cfg.model_copy(
        update={"reward": cfg.reward.model_copy(update={"perception_weight": 0.0})}
    )


VARIANTS: dict[str, Callable[[Config], Config]] = {
    "default": lambda cfg: cfg,
    "no_perception": no_perception,
}


def output_paths(cfg: Config, track: str, variant: str) -> tuple[Path, Path, Path]:
    """(starting checkpoint, checkpoint root, metrics file) of one run."""
    root = Path(cfg.paths.checkpoints_dir) / track
    metrics_dir = Path(cfg.paths.metrics_dir)
    if variant == "default":
        return root / "pesft", root / "perpo", metrics_dir / f"perpo_{track}.json"
    name = f"perpo_{variant}" if track == "omni_r1_zero" else f"perpo_{track}_{variant}"
    return root / "pesft", root / f"perpo_{variant}", metrics_dir / f"{name}.json"


def model_writer(policy: Any, tokenizer: Any, start_dir: Path) -> Callable[[Path], None]:
    """Writes a ``load_omni`` folder: the starting checkpoint's other files, then the new weights."""

    def write(folder: Path) -> None:
        for path in sorted(start_dir.iterdir()):
            if (
                path.is_file()
                and path.name not in NOT_INHERITED
                and not path.name.startswith(NOT_INHERITED_PREFIXES)
            ):
                shutil.copy2(path, folder / path.name)
        policy.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return write


def image_decoder(omni: Any) -> Callable[[torch.Tensor], list[Any]] | None:
    """Codes [n, H*W] → PIL images with the checkpoint's VQ decoder, or None without one."""
    if getattr(omni, "vq_decoder", None) is None:
        return None
    return lambda codes: decode_codes(omni.vq_decoder, omni.model.model.vqmodel, codes)


def weights_digest(folder: Path) -> str:
    """sha256 of the starting checkpoint's weight files: a new PeSFT model never resumes an old run."""
    files = sorted(folder.glob("*.safetensors"))
    return ",".join(f"{path.name}:{file_sha256(path)}" for path in files)


def resume_folder(out_root: Path) -> Path:
    """The rolling resumable checkpoint beside the sweep folders: ``<out_root>_resume`` (not a DVC output)."""
    return out_root.parent / f"{out_root.name}_resume"


def _saved_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))


def resumable_checkpoint(out_root: Path, fingerprint: str) -> Path | None:
    """The latest checkpoint (a sweep folder under ``out_root`` or the resume folder) written
    under ``fingerprint``; checkpoints of another fingerprint are removed."""
    candidates = []
    latest = latest_checkpoint(out_root)
    if latest is not None:
        if _saved_state(latest).get("extra", {}).get("fingerprint") == fingerprint:
            candidates.append((int(_saved_state(latest)["step"]), latest))
        else:
            shutil.rmtree(out_root)
    rolling = resume_folder(out_root)
    if (rolling / TRAINER_STATE).is_file():
        state = _saved_state(rolling)
        if state.get("extra", {}).get("fingerprint") == fingerprint:
            candidates.append((int(state["step"]), rolling))
        else:
            shutil.rmtree(rolling)
    return max(candidates, key=lambda item: item[0])[1] if candidates else None


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if not math.isnan(value)}


def run(
    cfg: Config,
    track: str,
    variant: str = "default",
    dry_run: bool = False,
    manifest: Path | None = None,
    rendered: bool = False,
) -> dict[str, Any]:
    """Train PeRPO for one track (and variant); return the summary metrics.

    ``rendered``: the executor draws every image of the rollouts and they are context (the
    study's rendered regime, :class:`omni_r1.training.rollout.ImageRenderer`); local engine only.

    With ``perpo.engine: verl`` the run is a verl job (:func:`omni_r1.verl.launch.run_verl`):
    ``dry_run`` writes its inputs (and the RayJob ``manifest`` when given) and prints the
    submit command without submitting.
    """
    if track not in cfg.pesft.datasets:  # the tracks are the keys of pesft.datasets
        raise ValueError(f"unknown track {track!r}; known: {', '.join(cfg.pesft.datasets)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    cfg = VARIANTS[variant](cfg)
    start_dir, out_root, metrics_path = output_paths(cfg, track, variant)
    if not start_dir.is_dir():
        raise FileNotFoundError(
            f"{start_dir}: no PeSFT checkpoint; run `omni-r1 pesft --track {track}`"
        )
    if rendered and cfg.perpo.engine != "local":
        raise ValueError("rendered images need perpo.engine: local (verl: see README, the study)")
    if cfg.perpo.engine == "verl":
        from omni_r1.verl.launch import run_verl

        return run_verl(cfg, track, start_dir, out_root, metrics_path, dry_run, manifest)
    if dry_run or manifest is not None:
        raise ValueError("--dry-run and --manifest apply to perpo.engine: verl")

    dataset_dir = Path(cfg.data.prepared_dir) / cfg.perpo.dataset
    encoded_dir = Path(cfg.data.encoded_dir) / cfg.perpo.dataset

    # setup
    torch.manual_seed(cfg.run.seed)
    omni = load_omni(cfg, model_dir=str(start_dir))
    reference = load_omni(cfg, model_dir=str(start_dir)).model.eval()
    policy = omni.model.eval()
    prompts = build_prompts(
        list(read_records(dataset_dir)), read_codes(encoded_dir), omni.layout, omni.tokenizer,
        source=cfg.perpo.dataset,
    )
    fingerprint = config_fingerprint(cfg, extra=f"{track}/{variant}/{weights_digest(start_dir)}")
    trainer = PerpoTrainer(
        policy, reference if cfg.grpo.kl_loss_coef > 0 else None, omni.tokenizer, omni.layout, prompts, cfg,
        write_model=model_writer(policy, omni.tokenizer, start_dir), fingerprint=fingerprint,
        scorer=reward_scorer(cfg, policy, omni.layout, omni.vq_decoder),
        renderer=image_renderer(cfg, policy, omni.tokenizer, omni.layout) if rendered else None,
    )  # fmt: skip
    resume_from = resumable_checkpoint(out_root, fingerprint)
    if resume_from is not None:
        trainer.resume(resume_from)
    decode = image_decoder(omni)

    # work
    with stage_run(
        cfg,
        "perpo",
        run_name=f"perpo-{track}-{variant}",
        tags={"omni_r1.track": track, "omni_r1.variant": variant},
    ):
        log_dataset_manifest(dataset_dir / MANIFEST, cfg.perpo.dataset)
        mlflow.log_params(
            {
                "perpo.track": track,
                "perpo.variant": variant,
                "perpo.resumed_from_step": trainer.step_count,
            }
        )

        progress = StageProgress(
            f"perpo {track}" + ("" if variant == "default" else f" ({variant})"), cfg.perpo.max_steps,
            unit="steps", every_s=cfg.console.log_every_s, resumed_at=trainer.step_count,
        )  # fmt: skip

        def on_step(step: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(_finite(metrics), step=step)
            progress.update(step, **{short: metrics[key] for key, short in PROGRESS_POSTFIX.items() if key in metrics})

        def on_probe(name: str, done: int, total: int) -> None:
            progress.update(probe=f"{name} {done}/{total} prompts" if done < total else None)

        def on_checkpoint(step: int, folder: Path, responses: list[Response]) -> None:
            title = f"PeRPO {track} ({variant}) step {step}"
            html = rollout_gallery_html(
                responses, prompts, decode, cfg.perpo.gallery_examples, title
            )
            mlflow.log_text(html, f"perpo/gallery_step_{step}.html")
            log_checkpoint(folder, f"checkpoints/step_{step}", cfg.storage)

        with progress:
            history = trainer.train(
                cfg.perpo.max_steps, out_root, cfg.perpo.save_steps, on_step, on_checkpoint, on_probe,
                resume_dir=resume_folder(out_root), resume_every=cfg.perpo.resume_every,
            )  # fmt: skip
        for name, step in (("start", 0), ("end", trainer.step_count)):
            if name in trainer.probes:
                mlflow.log_metrics(
                    _finite({f"probe/{k}": v for k, v in trainer.probes[name].items()}), step=step
                )
        summary = summary_metrics(history, trainer.probes, cfg.perpo.reward_window)
        mlflow.log_dict(summary, "perpo/summary.json")

    # save
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(resume_folder(out_root), ignore_errors=True)  # the run is complete
    return summary
