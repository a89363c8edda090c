"""Corrupt artifacts: truncate or flip one bit of a stored file, load it with the real loader.

Targets (from a workspace built by the real stages): the tiny model's ``model.safetensors``
and ``vq_decoder.safetensors``, a PeRPO checkpoint's ``optimizer.safetensors``,
``trainer_state.json`` and ``checksums.json``, a prepared dataset's ``manifest.json`` and
parquet shard, and an encoded ``codes.parquet``. Each injection works on a fresh copy of the
artifact's folder. Detected: the loader raised an error naming the corrupted file; named-less
errors and silent loads are counted apart.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_r1.config import Config

KINDS = ("truncate", "bitflip")


@dataclass
class CorruptFigures:
    injected: int = 0
    detected_named: int = 0
    detected_unnamed: int = 0
    silent: int = 0
    by_target: dict[str, list[int]] = field(default_factory=dict)  # target -> [injected, detected_named]
    examples: list[str] = field(default_factory=list)


def truncate(path: Path, rng: random.Random) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])


def bitflip(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    offset = rng.randrange(len(data))
    data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


INJECT = {"truncate": truncate, "bitflip": bitflip}


def loaders(cfg: Config) -> dict[str, tuple[str, Callable[[Path], Any]]]:
    """target name -> (file inside the folder, load(folder))."""
    from omni_r1.data.codes import read_codes
    from omni_r1.data.storage import read_records
    from omni_r1.model.loading import load_omni
    from omni_r1.training.checkpoint import load_checkpoint_state, load_model_weights
    from omni_r1.training.perpo import build_optimizer

    def load_model(folder: Path) -> Any:
        return load_omni(cfg, model_dir=folder)

    def load_trainer_state(folder: Path) -> Any:
        omni = load_omni(cfg, model_dir=folder)
        load_model_weights(omni.model, folder)
        optimizer, scheduler = build_optimizer(omni.model, cfg)
        return load_checkpoint_state(folder, optimizer, scheduler, restore_rng=False)

    return {
        "model.safetensors": ("model.safetensors", load_model),
        "vq_decoder.safetensors": ("vq_decoder.safetensors", load_model),
        "optimizer.safetensors": ("optimizer.safetensors", load_trainer_state),
        "trainer_state.json": ("trainer_state.json", load_trainer_state),
        "checksums.json": ("checksums.json", load_trainer_state),
        "manifest.json": ("manifest.json", lambda folder: list(read_records(folder))),
        "parquet shard": ("shard-00000.parquet", lambda folder: list(read_records(folder))),
        "codes.parquet": ("codes.parquet", read_codes),
    }


def sources(cfg: Config, workspace: Path) -> dict[str, Path]:
    """target name -> the workspace folder holding it."""
    step = workspace / cfg.paths.checkpoints_dir / "omni_r1" / "perpo" / f"step_{cfg.perpo.save_steps[-1]}"
    model = workspace / cfg.model.local_dir
    return {
        "model.safetensors": model,
        "vq_decoder.safetensors": model,
        "optimizer.safetensors": step,
        "trainer_state.json": step,
        "checksums.json": step,
        "manifest.json": workspace / cfg.data.prepared_dir / "sft_train",
        "parquet shard": workspace / cfg.data.prepared_dir / "sft_train",
        "codes.parquet": workspace / cfg.data.encoded_dir / "sft_train",
    }


def inject_and_load(
    source: Path, file_name: str, load: Callable[[Path], Any], kind: str, rng: random.Random, scratch: Path
) -> str:
    """'named' | 'unnamed' | 'silent': what loading the corrupted copy did."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch)
    INJECT[kind](scratch / file_name, rng)
    try:
        load(scratch)
    except Exception as err:  # noqa: BLE001 - any refusal counts; whether it names the file is the figure
        return "named" if file_name in str(err) else f"unnamed: {type(err).__name__}: {err}"
    return "silent"


def run(cfg: Config, workspace: Path, per_kind: int, seed: int, log: Callable[[str], None]) -> CorruptFigures:
    rng = random.Random(seed)
    figures = CorruptFigures()
    targets, folders = loaders(cfg), sources(cfg, workspace)
    scratch = workspace.parent / "corrupt-scratch"
    for target, (file_name, load) in targets.items():
        counts = figures.by_target.setdefault(target, [0, 0])
        for kind in KINDS:
            for _ in range(per_kind):
                outcome = inject_and_load(folders[target], file_name, load, kind, rng, scratch)
                figures.injected += 1
                counts[0] += 1
                if outcome == "named":
                    figures.detected_named += 1
                    counts[1] += 1
                elif outcome == "silent":
                    figures.silent += 1
                    figures.examples.append(f"{target} ({kind}): loaded without an error")
                else:
                    figures.detected_unnamed += 1
                    figures.examples.append(f"{target} ({kind}): {outcome[:200]}")
        log(f"  corrupt: {target}: {counts[1]}/{counts[0]} detected, file named")
    shutil.rmtree(scratch, ignore_errors=True)
    return figures
