"""A throwaway project folder for the campaign: params.yaml + the tiny overlay, prepared data,
the tiny model and a PeSFT checkpoint, built by the real stage code."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from omni_r1.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAY = Path(__file__).resolve().parent / "tiny.yaml"
PARAMS, OVERLAY_NAME = "params.yaml", "faults.yaml"


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run the block with ``folder`` as the working directory (stage paths are relative)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def workspace_config(folder: Path) -> Config:
    return load_config(folder / PARAMS, (folder / OVERLAY_NAME,))


def new_workspace(folder: Path) -> Config:
    """Copy params.yaml and the campaign overlay into ``folder``; return the merged config."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / PARAMS, folder / PARAMS)
    shutil.copy(OVERLAY, folder / OVERLAY_NAME)
    return workspace_config(folder)


def build_inputs(folder: Path, upto: str) -> Config:
    """Run prepare → tokenizer (→ base → encode → pesft omni_r1, as far as ``upto`` needs) in ``folder``."""
    from omni_r1.stages import base, encode, pesft, prepare, tokenizer

    cfg = new_workspace(folder)
    steps = {
        "tokenizer": [prepare.run],
        "base": [prepare.run, tokenizer.run],
        "pesft": [prepare.run, tokenizer.run, base.run, encode.run],
        "perpo": [prepare.run, tokenizer.run, base.run, encode.run, lambda c: pesft.run(c, "omni_r1")],
    }[upto]
    with inside(folder):
        for step in steps:
            step(cfg)
    return cfg
