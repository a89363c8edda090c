"""Atomic training checkpoints with everything a bit-exact resume needs.

A checkpoint is one folder. Model files are written by a caller-supplied function (for
PeRPO: ``save_pretrained`` model + tokenizer + VQ decoder, so the folder is loadable by
``load_omni``); this module adds the trainer state, all as safetensors or JSON (no pickle):

- ``optimizer.safetensors`` + ``optimizer.json``: every tensor of the optimizer state under
  ``state.<param index>.<name>``, the rest (param groups, scalar state) as JSON;
- ``rng_state.safetensors``: torch CPU RNG (and every CUDA device's) as uint8 tensors;
- ``trainer_state.json``: step, scheduler state and any JSON-safe ``extra`` the trainer
  keeps (prompt cursor, metric history, config hash).

Only torch's generators are saved: training draws from nothing else, while Python's and
NumPy's global generators are advanced by libraries (tracking, HTTP clients) by amounts that
differ from run to run, so storing them would make two identical runs write different files.

Atomicity and integrity come from :func:`omni_r1.model.loading.write_folder_atomically`: the
folder is written under a temporary name with ``checksums.json``, fsynced and renamed into
place, and the loaders here call :func:`~omni_r1.model.loading.verify_folder` first, so a
truncated or bit-flipped file raises :class:`CheckpointError` naming it instead of being used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from omni_r1.model.loading import CheckpointError, verify_folder, write_folder_atomically

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_TENSORS = "rng_state.safetensors"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INDEX = "model.safetensors.index.json"


@dataclass
class TrainerState:
    """What a trainer restores besides its weights."""

    step: int
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, torch.Tensor]:
    """Torch RNG state tensors: the CPU generator and every CUDA device's."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    return tensors


def restore_rng_state(
    tensors: Mapping[str, torch.Tensor], json_state: Mapping[str, Any] | None = None
) -> None:
    """Restore torch's generators; Python/NumPy states only from checkpoints that stored them."""
    if json_state and "python" in json_state:
        version, internal, gauss = json_state["python"]
        random.setstate((version, tuple(internal), gauss))
    if json_state and "numpy" in json_state:
        kind, keys, pos, has_gauss, cached = json_state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# Optimizer state as safetensors + JSON
# ---------------------------------------------------------------------------------------------


def split_optimizer_state(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``optimizer.state_dict()`` → (JSON part, flat tensors ``state.<index>.<name>``)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return {"param_groups": state_dict["param_groups"], "scalars": scalars}, tensors


def join_optimizer_state(
    meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """Inverse of :func:`split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [  # JSON turned tuples (betas) into lists
        {
            key: tuple(value) if isinstance(value, list) and key != "params" else value
            for key, value in group.items()
        }
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def save_checkpoint(
    directory: Path | str,
    *,
    write_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainerState,
) -> Path:
    """Write model files, optimizer, scheduler, RNG and trainer state atomically.

    Args:
        directory: final checkpoint folder (e.g. ``checkpoints/omni_r1/perpo/step_10``).
        write_model: writes the model files into the folder it is given.
        optimizer, scheduler: saved with their full state.
        state: step and JSON-safe extras.

    Returns:
        The checkpoint folder.
    """

    def write(folder: Path) -> None:
        write_model(folder)
        meta, tensors = split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(folder / OPTIMIZER_TENSORS))
        _write_json(folder / OPTIMIZER_META, meta)
        save_file(capture_rng_state(), str(folder / RNG_TENSORS))
        trainer = {"step": state.step, "scheduler": scheduler.state_dict(), "extra": state.extra}
        _write_json(folder / TRAINER_STATE, trainer)

    return write_folder_atomically(directory, write)


def load_checkpoint_state(
    directory: Path | str,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    restore_rng: bool = True,
) -> TrainerState:
    """Restore optimizer, scheduler (and RNG) from a checkpoint; return step and extras.

    Raises:
        CheckpointError: a trainer-state file is missing, or a file does not match ``checksums.json``.
    """
    folder = Path(directory)
    verify_folder(folder)
    for name in (TRAINER_STATE, OPTIMIZER_TENSORS, OPTIMIZER_META, RNG_TENSORS):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: {name} missing, not a resumable checkpoint")
    trainer = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    meta = json.loads((folder / OPTIMIZER_META).read_text(encoding="utf-8"))
    optimizer.load_state_dict(
        join_optimizer_state(meta, load_file(str(folder / OPTIMIZER_TENSORS)))
    )
    scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng:
        restore_rng_state(load_file(str(folder / RNG_TENSORS)), trainer.get("rng"))
    return TrainerState(step=int(trainer["step"]), extra=trainer["extra"])


def _weight_files(folder: Path) -> Iterator[Path]:
    if (folder / MODEL_WEIGHTS).is_file():
        yield folder / MODEL_WEIGHTS
        return
    index = folder / MODEL_INDEX
    if not index.is_file():
        raise CheckpointError(f"{folder}: neither {MODEL_WEIGHTS} nor {MODEL_INDEX}")
    shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
    for name in sorted(set(shards)):
        yield folder / name


def load_model_weights(model: torch.nn.Module, directory: Path | str) -> None:
    """Load ``save_pretrained`` safetensors weights into ``model`` in place.

    Keys the file leaves out must be tied to a saved parameter (same storage).

    Raises:
        CheckpointError: unexpected keys, a missing key that is not tied, or a file that does
            not match ``checksums.json``.
    """
    folder = Path(directory)
    verify_folder(folder)
    state: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        state.update(load_file(str(path)))
    result = model.load_state_dict(state, strict=False)
    current = model.state_dict(keep_vars=True)
    loaded = {current[key].data_ptr() for key in state if key in current}
    missing = [key for key in result.missing_keys if current[key].data_ptr() not in loaded]
    if result.unexpected_keys or missing:
        raise CheckpointError(
            f"{folder}: weights do not fit the model (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )


def step_folders(root: Path | str) -> list[tuple[int, Path]]:
    """``(k, root/step_k)`` for every complete checkpoint folder under ``root``, by k."""
    found = []
    for path in Path(root).glob("step_*"):
        suffix = path.name.removeprefix("step_")
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def latest_checkpoint(root: Path | str) -> Path | None:
    """The complete ``step_<k>`` folder with the largest k, or None."""
    folders = step_folders(root)
    return folders[-1][1] if folders else None
