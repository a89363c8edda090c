"""Kill campaign: SIGKILL a training stage at seeded random moments, resume it, and compare.

For each stage (tokenizer, base, PeSFT, PeRPO) one uninterrupted run gives the reference outputs and
its duration T. Then chains run in the same workspace: up to ``KILLS_PER_CHAIN`` tries, each
SIGKILLed after a delay drawn uniformly from [0, T] (seeded; T shrinks to the quickest
uninterrupted run seen), each resuming what the one before left; then a last try runs to its
end. After every kill the workspace is checked: every folder holding ``checksums.json`` must
verify, and no stage output may exist without one (half-written). When a chain ends, its
weight files are compared byte for byte with the reference and the outputs are removed for the
next chain. A kill counts as survived when its chain ended with identical weights and no
integrity fault was seen after it. (The tokenizer and base stages have no mid-run checkpoint: a killed
try starts over, so only atomicity and the final bytes are tested there.)

PeRPO's lost work is read from its log: the last logged step before the kill minus the step of
the checkpoint the next try resumed from (bounded by ``perpo.resume_every``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.faults import forked
from benchmarks.faults.workspace import build_inputs, workspace_config
from omni_r1.config import Config
from omni_r1.model.loading import CHECKSUMS, CheckpointError, verify_folder

KILLS_PER_CHAIN = 4  # kills before a chain's last try runs to its end
STEP_LINE = re.compile(r"(\d+)/(\d+) steps")


@dataclass(frozen=True)
class StageUnderTest:
    name: str
    run: Callable[[Config], Any]
    outputs: Callable[[Config], list[Path]]  # folders compared with the reference, relative paths


def _tokenizer(cfg: Config) -> Any:
    from omni_r1.stages import tokenizer

    return tokenizer.run(cfg)


def _base(cfg: Config) -> Any:
    from omni_r1.stages import base

    return base.run(cfg)


def _pesft(cfg: Config) -> Any:
    from omni_r1.stages import pesft

    return pesft.run(cfg, "omni_r1")


def _perpo(cfg: Config) -> Any:
    from omni_r1.stages import perpo

    return perpo.run(cfg, "omni_r1")


def _perpo_outputs(cfg: Config) -> list[Path]:
    root = Path(cfg.paths.checkpoints_dir) / "omni_r1" / "perpo"
    return [root / f"step_{step}" for step in cfg.perpo.save_steps]


STAGES = {
    "tokenizer": StageUnderTest("tokenizer", _tokenizer, lambda cfg: [Path(cfg.model.local_dir)]),
    "base": StageUnderTest("base", _base, lambda cfg: [Path(cfg.base.out_dir)]),
    "pesft": StageUnderTest("pesft", _pesft, lambda cfg: [Path(cfg.paths.checkpoints_dir) / "omni_r1" / "pesft"]),
    "perpo": StageUnderTest("perpo", _perpo, _perpo_outputs),
}


@dataclass
class KillFigures:
    stage: str
    kills: int = 0
    survived: int = 0
    completions: int = 0
    identical_completions: int = 0
    other_files_differing: int = 0
    integrity_faults: int = 0
    half_written: int = 0
    failed_runs: int = 0
    max_lost_steps: int | None = None
    reference_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def weight_digests(folder: Path, outputs: list[Path]) -> dict[str, str]:
    """sha256 of every file of the output folders, by path relative to ``folder``."""
    digests = {}
    for output in outputs:
        for path in sorted((folder / output).rglob("*")):
            if path.is_file():
                digests[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def integrity_problems(folder: Path, outputs: list[Path]) -> tuple[list[str], list[str]]:
    """(folders failing ``verify_folder``, output folders present without ``checksums.json``)."""
    corrupt = []
    for manifest in folder.rglob(CHECKSUMS):
        try:
            verify_folder(manifest.parent)
        except CheckpointError as err:
            corrupt.append(str(err))
    half = [str(output) for output in outputs if (folder / output).exists() and not (folder / output / CHECKSUMS).is_file()]
    return corrupt, half


def last_logged_step(log_path: Path, offset: int) -> int:
    """The last ``k/N steps`` progress figure written to the log after ``offset``."""
    text = log_path.read_text(encoding="utf-8", errors="replace")[offset:]
    found = STEP_LINE.findall(text)
    return int(found[-1][0]) if found else 0


def resumed_step(cfg: Config, folder: Path) -> int:
    """The step PeRPO resumes from now: its latest sweep checkpoint or the rolling resume folder."""
    from omni_r1.stages.perpo import resume_folder
    from omni_r1.training.checkpoint import TRAINER_STATE

    out_root = folder / cfg.paths.checkpoints_dir / "omni_r1" / "perpo"
    steps = [0]
    for candidate in [*out_root.glob("step_*"), resume_folder(out_root)]:
        if (candidate / TRAINER_STATE).is_file():
            steps.append(int(json.loads((candidate / TRAINER_STATE).read_text(encoding="utf-8"))["step"]))
    return max(steps)


def clear_outputs(folder: Path, stage: StageUnderTest, cfg: Config) -> None:
    for output in stage.outputs(cfg):
        shutil.rmtree(folder / output, ignore_errors=True)
    if stage.name == "perpo":
        shutil.rmtree(folder / cfg.paths.checkpoints_dir / "omni_r1" / "perpo", ignore_errors=True)
        shutil.rmtree(folder / cfg.paths.checkpoints_dir / "omni_r1" / "perpo_resume", ignore_errors=True)
    if stage.name == "pesft":
        shutil.rmtree(folder / cfg.paths.checkpoints_dir / "omni_r1" / "pesft_resume", ignore_errors=True)


def kill_stage(stage: StageUnderTest, root: Path, kills: int, rng: random.Random, log: Callable[[str], None]) -> KillFigures:
    """Reference run, then kill/resume chains until ``kills`` kills were delivered."""
    figures = KillFigures(stage.name)
    folder = root / stage.name
    log_path = root / f"{stage.name}.log"
    setup = forked.run_to_end(lambda: build_inputs(folder, stage.name), root, log_path)
    if setup != 0:
        raise RuntimeError(f"building the {stage.name} workspace failed; see {log_path}")
    cfg = workspace_config(folder)
    clear_outputs(folder, stage, cfg)
    started = time.perf_counter()
    if forked.run_to_end(lambda: stage.run(cfg), folder, log_path) != 0:
        raise RuntimeError(f"the uninterrupted {stage.name} run failed; see {log_path}")
    figures.reference_seconds = time.perf_counter() - started
    outputs = stage.outputs(cfg)
    reference = weight_digests(folder, outputs)
    clear_outputs(folder, stage, cfg)

    lost: list[int] = []
    shortest = figures.reference_seconds  # the quickest uninterrupted run seen: kill delays are drawn below it
    while figures.kills < kills:
        chain_kills, chain_clean, finished = 0, True, None
        while chain_kills < KILLS_PER_CHAIN and figures.kills < kills and finished is None:
            delay = rng.uniform(0.0, shortest)
            offset = log_path.stat().st_size if log_path.exists() else 0
            began = time.perf_counter()
            process = forked.start(lambda: stage.run(cfg), folder, log_path)
            process.join(delay)
            if not forked.kill(process):  # it finished before the kill
                finished = process.exitcode
                if chain_kills == 0 and finished == 0:
                    shortest = min(shortest, time.perf_counter() - began)
                break
            figures.kills += 1
            chain_kills += 1
            corrupt, half = integrity_problems(folder, outputs)
            figures.integrity_faults += len(corrupt)
            figures.half_written += len(half)
            figures.notes += [f"after kill {figures.kills}: {problem}" for problem in corrupt + half]
            chain_clean = chain_clean and not corrupt and not half
            if stage.name == "perpo":
                lost.append(max(0, last_logged_step(log_path, offset) - resumed_step(cfg, folder)))
        if finished is None:  # the chain's last try runs to its end
            finished = forked.run_to_end(lambda: stage.run(cfg), folder, log_path)
        if finished != 0:
            figures.failed_runs += 1
            figures.notes.append(f"a resumed run exited with {finished}; see {log_path}")
        else:
            figures.completions += 1
            digests = weight_digests(folder, outputs)
            weights_same = {k: v for k, v in digests.items() if k.endswith(".safetensors")} == {
                k: v for k, v in reference.items() if k.endswith(".safetensors")
            }
            figures.identical_completions += weights_same
            figures.other_files_differing += sum(
                1 for k in reference if digests.get(k) != reference[k] and not k.endswith(".safetensors")
            )
            if weights_same and chain_clean:
                figures.survived += chain_kills
            log(f"  {stage.name}: {figures.kills}/{kills} kills; a chain of {chain_kills} finished, weights identical: {weights_same}")
        clear_outputs(folder, stage, cfg)
    figures.max_lost_steps = max(lost) if lost else None
    return figures


def run(root: Path, stages: list[str], kills: int, seed: int, log: Callable[[str], None]) -> list[KillFigures]:
    rng = random.Random(seed)
    results = []
    for name in stages:
        log(f"kills: {name}")
        results.append(kill_stage(STAGES[name], root, kills, rng, log))
        log(f"  {results[-1]}")
    return results
