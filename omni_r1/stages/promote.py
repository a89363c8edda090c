"""Stage ``promote``: register the best evaluated checkpoint; move the champion alias on a win.

What it does:

1. reads every ``<paths.metrics_dir>/omnibench_<track>_<step>.json`` and picks the checkpoint
   with the highest Omni-Bench average (PeSFT-only and PeRPO checkpoints; ablations only
   with ``promote.include_ablations``);
2. opens the MLflow run of the stage, logs that checkpoint folder as its ``checkpoint``
   artifacts (or uploads it to ``storage.s3_uri``, see ``omni_r1.tracking.log_checkpoint``)
   and registers that location (with the run id) as a new version of ``tracking.registered_model``, tagged with track,
   step, Omni-Bench metrics, data manifest hashes (``metrics/data_*.json``) and the git sha;
3. moves ``tracking.champion_alias`` to the new version only when its average beats the
   current champion's (read from the champion version's tags) by more than
   ``promote.min_improvement``;
4. writes ``<paths.metrics_dir>/promote.json`` (what was registered and whether it won).

Paper: the released models are the best PeRPO checkpoints by benchmark accuracy
(Omni-R1-M/L, Zero-T/S/M); the registry and alias are this project's way of recording which
checkpoint serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from omni_r1.config import Config
from omni_r1.eval.promote import (
    TAG_AVERAGE,
    beats,
    best_candidate,
    champion_average,
    register_version,
    version_tags,
)
from omni_r1.eval.report import read_omnibench_metrics
from omni_r1.tracking import (
    champion_version,
    data_manifest_tags,
    git_sha,
    log_checkpoint,
    stage_run,
    tracking_uri,
)

CHECKPOINT_ARTIFACT = "checkpoint"


def run(cfg: Config) -> dict[str, Any]:
    """Register the best checkpoint; return ``{"version", "promoted", "average", "champion_average", ...}``."""
    results = read_omnibench_metrics(cfg.paths.metrics_dir)
    best = best_candidate(results, cfg.promote.include_ablations)
    if best is None:
        raise FileNotFoundError(f"no evaluated checkpoint to promote under {cfg.paths.metrics_dir}")
    folder = best.ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"{folder}: checkpoint of {best.ref.name} (average {best.average:.4f}) not found")
    name, alias = cfg.tracking.registered_model, cfg.tracking.champion_alias
    tags = version_tags(best, data_manifest_tags(cfg.paths.metrics_dir), git_sha())
    run_tags = {"omni_r1.track": best.ref.track, "omni_r1.step": best.ref.step}
    with stage_run(cfg, "promote", run_name=f"promote-{best.ref.name}", tags=run_tags) as active:
        client = MlflowClient(tracking_uri(cfg))
        champion = champion_version(cfg)
        previous = champion_average(champion)
        source = log_checkpoint(folder, CHECKPOINT_ARTIFACT, cfg.storage)  # S3 or artifact URI
        version = register_version(client, name, source, active.info.run_id, tags)
        promoted = beats(best.average, previous, cfg.promote.min_improvement)
        if promoted:
            client.set_registered_model_alias(name, alias, version.version)
        mlflow.log_metrics({"promote.average": best.average, "promote.promoted": float(promoted)})
        mlflow.set_tags({"omni_r1.registered_version": str(version.version), TAG_AVERAGE: repr(best.average)})
    summary = {
        "checkpoint": best.ref.name,
        "version": int(version.version),
        "average": best.average,
        "champion_version": int(champion.version) if champion is not None else None,
        "champion_average": previous if previous is None or previous != float("-inf") else None,
        "promoted": promoted,
    }
    path = Path(cfg.paths.metrics_dir) / "promote.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
