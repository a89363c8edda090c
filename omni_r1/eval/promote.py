"""Choosing and registering the best checkpoint; the champion alias moves only on a main-line win.

- Candidates: every evaluated checkpoint with a folder (PeSFT-only and PeRPO steps of both
  tracks; ``no_perception_<k>`` only with ``promote.include_ablations``; ``base`` never, it
  is not a trained checkpoint). The best is the highest Omni-Bench ``average``; ties go to
  the earlier checkpoint in (track, pesft, PeRPO step) order.
- Registration: the checkpoint is logged as a ``pyfunc`` model (:mod:`omni_r1.serving`) and
  registered as a new version of ``tracking.registered_model``, tagged with the track, step,
  every Omni-Bench metric, the data manifest hashes, the Omni-Bench version, the git sha, the
  ``dvc.lock`` hash and the run line.
- Run line: ``main`` when the run has no overrides (no ``--overlay``, params.yaml as
  committed) and is not a DVC experiment (``DVC_EXP_NAME`` unset); anything else is an
  ``experiment``. Only a main-line run may move ``tracking.champion_alias``; an experiment's
  version gets ``tracking.challenger_alias`` and the champion is left alone.
- Same bench: averages are compared only on one Omni-Bench version (the SHA-256 of its data
  manifest, tag ``omni_r1.omnibench_version``). A champion scored on another version is
  re-evaluated on the current one first; if that is impossible the promotion is refused.
- Champion: the alias moves to the new version only when its average exceeds the
  champion's by more than ``promote.min_improvement`` (a champion without an average tag is
  always beaten).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import AVERAGE_KEY
from omni_r1.eval.report import step_order

TAG_TRACK = "omni_r1.track"
TAG_STEP = "omni_r1.step"
TAG_METRIC_PREFIX = "omni_r1.omnibench."
TAG_AVERAGE = f"{TAG_METRIC_PREFIX}{AVERAGE_KEY}"
TAG_BENCH = "omni_r1.omnibench_version"
TAG_LINE = "omni_r1.line"
TAG_DVC_LOCK = "omni_r1.dvc_lock_sha256"
MAIN_LINE, EXPERIMENT_LINE = "main", "experiment"


def run_line(dvc_experiment: str | None, overlays: Sequence[object], params_changed: bool) -> tuple[str, str]:
    """``("main", "")``, or ``("experiment", why)`` when the run carries any override."""
    reasons = []
    if dvc_experiment:
        reasons.append(f"DVC experiment {dvc_experiment!r}")
    if overlays:
        reasons.append(f"overlays {', '.join(str(o) for o in overlays)}")
    if params_changed:
        reasons.append("params.yaml differs from the committed one")
    return (EXPERIMENT_LINE, "; ".join(reasons)) if reasons else (MAIN_LINE, "")


def bench_version(data_tags: Mapping[str, str], data_tag_prefix: str, dataset: str) -> str:
    """The Omni-Bench version: SHA-256 of ``metrics/data_<dataset>.json`` (its data tag)."""
    key = f"{data_tag_prefix}{dataset}"
    if key not in data_tags:
        raise FileNotFoundError(f"no data manifest metrics/data_{dataset}.json: the Omni-Bench version is unknown")
    return data_tags[key]


def bench_mismatch(version: ModelVersion, bench: str) -> str | None:
    """Why ``version``'s scores are not on Omni-Bench ``bench`` (None when they are)."""
    scored_on = (version.tags or {}).get(TAG_BENCH)
    if scored_on == bench:
        return None
    return f"champion version {version.version} was scored on Omni-Bench {scored_on or '<unknown>'}, not {bench}"


@dataclass(frozen=True)
class Candidate:
    ref: CheckpointRef
    metrics: Mapping[str, float]

    @property
    def average(self) -> float:
        return float(self.metrics[AVERAGE_KEY])


def best_candidate(
    results: Mapping[CheckpointRef, Mapping[str, float]], include_ablations: bool
) -> Candidate | None:
    """The evaluated checkpoint with the highest average (see the module docstring)."""
    allowed = {"pesft", "perpo"} | ({"no_perception"} if include_ablations else set())
    candidates = [Candidate(ref, results[ref]) for ref in sorted(results, key=step_order) if ref.kind in allowed]
    if not candidates:
        return None
    return max(candidates, key=lambda c: c.average)  # max keeps the first of equal values


def champion_average(version: ModelVersion | None) -> float | None:
    """The champion's Omni-Bench average from its tags; None without a champion, -inf without the tag."""
    if version is None:
        return None
    value = (version.tags or {}).get(TAG_AVERAGE)
    try:
        return float(value) if value is not None else -math.inf
    except ValueError:
        return -math.inf


def beats(average: float, champion: float | None, min_improvement: float) -> bool:
    """Whether ``average`` takes the alias from a champion with average ``champion``."""
    return champion is None or average > champion + min_improvement


def version_tags(candidate: Candidate, data_tags: Mapping[str, str], git_sha: str | None) -> dict[str, str]:
    """Tags of a registered version: track, step, accuracy metrics, data manifest hashes, git sha.

    Only the scalar metrics (accuracy per slice and ``average``) become tags; nested blocks of
    the metrics file (``fidelity``) stay in the evaluation's MLflow run.
    """
    tags = {TAG_TRACK: candidate.ref.track, TAG_STEP: candidate.ref.step}
    tags.update({
        f"{TAG_METRIC_PREFIX}{key}": repr(float(value))
        for key, value in candidate.metrics.items() if isinstance(value, int | float)
    })  # fmt: skip
    tags.update(data_tags)
    if git_sha:
        tags["omni_r1.git_sha"] = git_sha
    return tags
