"""The DVC side of the flows: the stage graph of dvc.yaml, and DVC commands run as subprocesses.

The graph is read through DVC's own index (``dvc.repo.Repo(...).index.graph``), so
``foreach``/``matrix`` stages carry the names ``dvc stage list`` prints (``pesft@omni_r1``,
``evaluate@omni_r1-30``) and the order is the one ``dvc repro`` would use. Stages are run with
``dvc repro --single-item <name>``: DVC decides whether a stage is up to date, so the Prefect
UI and ``dvc repro`` share one graph, one cache and one run-cache.

Stage selection by track and checkpoint step reads the stage name's ``@`` key: a key token
equal to a track name (``omni_r1``, ``omni_r1_zero``) belongs to that track, an all-digit
token is a checkpoint step. A stage is kept unless one of its tokens names a track or step
that was not asked for.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from omni_r1.config import TRACKS
from omni_r1.tracking import MANIFEST_GLOB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DvcStage:
    name: str  # as `dvc stage list` prints it
    upstream: tuple[str, ...]  # names of the stages whose outputs this stage reads
    outs: tuple[str, ...]  # output, metric and plot paths relative to the project root


class DvcCommandError(RuntimeError):
    """A DVC command that exited non-zero; the message carries its command line and stderr."""


def manifest_pattern(metrics_dir: str) -> str:
    """Output path pattern of the data manifests the data stages write (``paths.metrics_dir``)."""
    return f"{metrics_dir}/{MANIFEST_GLOB}"


def load_stages(project: Path) -> list[DvcStage]:
    """Every pipeline stage of ``project`` in a dependency order ``dvc repro`` accepts.

    Ties are broken by the order of the stages in their dvc.yaml, so the order is stable.
    """
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        position = {stage: index for index, stage in enumerate(repo.index.stages)}
        ordered = nx.lexicographical_topological_sort(
            graph.reverse(copy=True), key=lambda stage: position.get(stage, len(position))
        )
        return [
            DvcStage(
                name=stage_name(stage, repo.root_dir),
                upstream=tuple(sorted(stage_name(dep, repo.root_dir) for dep in graph.successors(stage))),
                outs=tuple(str(out.def_path) for out in stage.outs),
            )
            for stage in ordered
            if not stage.is_import and stage.cmd
        ]


def stage_name(stage: Any, root: str) -> str:
    """The name ``dvc stage list`` prints from the project root (``dir/dvc.yaml:name`` if nested)."""
    dvcfile = os.path.relpath(stage.dvcfile.path, root)
    return stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"


def import_stages(project: Path) -> list[str]:
    """The ``.dvc`` files of imported data (``dvc import`` / ``dvc import-url``)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return sorted(
            {os.path.relpath(stage.path, repo.root_dir) for stage in repo.index.stages if stage.is_import}
        )


def key_tokens(stage_name: str) -> list[str]:
    """``evaluate@omni_r1_zero-30`` → ``["omni_r1_zero", "30"]``; ``prepare`` → ``[]``."""
    _, _, key = stage_name.partition("@")
    return [token for token in key.split("-") if token]


def is_selected(stage_name: str, tracks: Iterable[str], steps: Iterable[int] | None) -> bool:
    """Whether a stage belongs to the chosen tracks and checkpoint steps (None = all steps)."""
    wanted_tracks = set(tracks)
    wanted_steps = None if steps is None else {str(step) for step in steps}
    for token in key_tokens(stage_name):
        if token in TRACKS and token not in wanted_tracks:
            return False
        if token.isdigit() and wanted_steps is not None and token not in wanted_steps:
            return False
    return True


def select_stages(
    stages: Sequence[DvcStage], tracks: Iterable[str], steps: Iterable[int] | None
) -> list[DvcStage]:
    tracks = list(tracks)
    steps = None if steps is None else list(steps)
    return [stage for stage in stages if is_selected(stage.name, tracks, steps)]


def producers_of(stages: Sequence[DvcStage], pattern: str) -> list[DvcStage]:
    """The stages writing a path that matches ``pattern``, with all their upstream stages."""
    by_name = {stage.name: stage for stage in stages}
    wanted: set[str] = set()
    pending = [s.name for s in stages if any(fnmatch(out, pattern) for out in s.outs)]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name].upstream)
    return [stage for stage in stages if stage.name in wanted]


def override_args(overrides: Mapping[str, Any]) -> list[str]:
    """``{"perpo.learning_rate": 1e-6}`` → ``["perpo.learning_rate=1e-06"]`` (``dvc exp run --set-param`` syntax)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def apply_overrides(params_file: Path, overrides: Mapping[str, Any]) -> None:
    """Write overrides into a params file with DVC's own ``--set-param`` parser.

    Comments and key order are kept; the same strings work with ``dvc exp run -S``.
    """
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    dvc_apply_overrides(params_file, override_args(overrides))


def run_dvc(project: Path, args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``dvc <args>`` in ``project``; return its output, raise DvcCommandError on failure."""
    command = [sys.executable, "-m", "dvc", *args]
    result = subprocess.run(
        command, cwd=project, env=dict(env), capture_output=True, text=True, check=False
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise DvcCommandError(
            f"`dvc {' '.join(args)}` in {project} exited {result.returncode}:\n{output[-4000:]}"
        )
    return output
