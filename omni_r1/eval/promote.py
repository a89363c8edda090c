"""Choosing and registering the best checkpoint; the champion alias moves only on a win.

- Candidates: every evaluated checkpoint with a folder (PeSFT-only and PeRPO steps of both
  tracks; ``no_perception_<k>`` only with ``promote.include_ablations``; ``base`` never, it
  is not a trained checkpoint). The best is the highest Omni-Bench ``average``; ties go to
  the earlier checkpoint in (track, pesft, PeRPO step) order.
- Registration: the checkpoint folder is logged as the artifacts ``checkpoint/`` of the
  promote run and registered as a new version of ``tracking.registered_model``, tagged with
  the track, step, every Omni-Bench metric, the data manifest hashes and the git sha.
- Champion: the version behind ``tracking.champion_alias``; its average is read from its
  ``omni_r1.omnibench.average`` tag. The alias moves to the new version only when the new
  average exceeds the champion's by more than ``promote.min_improvement`` (a champion
  without that tag is always beaten).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow.entities.model_registry import ModelVersion

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import AVERAGE_KEY
from omni_r1.eval.report import step_order

TAG_TRACK = "omni_r1.track"
TAG_STEP = "omni_r1.step"
TAG_METRIC_PREFIX = "omni_r1.omnibench."
TAG_AVERAGE = f"{TAG_METRIC_PREFIX}{AVERAGE_KEY}"


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


def register_version(
    client: Any, model_name: str, source_uri: str, run_id: str, tags: Mapping[str, str]
) -> ModelVersion:
    """Register the checkpoint at ``source_uri`` as a new version of ``model_name``.

    ``mlflow.register_model`` accepts only MLflow-format models (an ``MLmodel`` file) for
    ``runs:/`` URIs in MLflow 3; a checkpoint folder is not one, so the version is created
    with the client call underneath it, from the artifacts' storage URI and the run id.
    The registered model is created on first use.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(model_name, source_uri, run_id=run_id, tags=dict(tags))
