"""Stage ``promote``: register the best evaluated checkpoint as a servable model; move the
champion alias only on a main-line win on the same Omni-Bench version.

What it does:

1. reads the ``<paths.metrics_dir>/omnibench_<track>_<step>.json`` of every configured checkpoint
   (:func:`omni_r1.eval.report.read_omnibench_metrics`) and picks the checkpoint
   with the highest Omni-Bench average (PeSFT-only and PeRPO checkpoints; ablations only
   with ``promote.include_ablations``);
2. decides the run line (:func:`omni_r1.eval.promote.run_line`): ``main`` without
   overrides, ``experiment`` under ``dvc exp run`` / a Prefect override run (``DVC_EXP_NAME``),
   with ``--overlay`` files, or with an uncommitted params.yaml;
3. main line with a champion scored on another Omni-Bench version (data manifest hash):
   loads the champion's registered model and re-evaluates it on the current bench, updating
   its tags; when it cannot be loaded the promotion is refused (reason in promote.json);
4. logs the checkpoint as a ``pyfunc`` model (:mod:`omni_r1.serving`: the files with
   ``storage.log_checkpoint_files``, else a URI + content hash of the one stored copy) and
   registers it, tagged with track, step, metrics, data manifest hashes, Omni-Bench version,
   git sha, ``dvc.lock`` hash and run line;
5. main line: moves ``tracking.champion_alias`` when the new average beats the champion's by
   more than ``promote.min_improvement``; experiment: sets ``tracking.challenger_alias``;
6. writes ``<paths.metrics_dir>/promote.json`` (what was registered, the line, the decision).

Paper: the released models are the best PeRPO checkpoints by benchmark accuracy
(Omni-R1-M/L, Zero-T/S/M); the registry and aliases are this project's way of recording
which checkpoint serves.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from omni_r1.config import Config
from omni_r1.eval.promote import (
    EXPERIMENT_LINE,
    TAG_AVERAGE,
    TAG_BENCH,
    TAG_DVC_LOCK,
    TAG_LINE,
    TAG_METRIC_PREFIX,
    beats,
    bench_mismatch,
    bench_version,
    best_candidate,
    champion_average,
    run_line,
    version_tags,
)
from omni_r1.eval.report import read_omnibench_metrics
from omni_r1.tracking import (
    DATA_TAG_PREFIX,
    DVC_EXPERIMENT_ENV,
    champion_version,
    data_manifest_tags,
    file_sha256,
    git_sha,
    log_checkpoint,
    stage_run,
    tracking_uri,
)

CHECKPOINT_ARTIFACT = "checkpoint"


def params_changed(path: Path = Path("params.yaml")) -> bool:
    """Whether git reports ``path`` modified against HEAD (False outside a git checkout or when untracked)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--", str(path)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and any("M" in line[:2] for line in result.stdout.splitlines())


def lineage_tags(bench: str, line: str) -> dict[str, str]:
    """Omni-Bench version, run line, ``dvc.lock`` hash and DVC experiment name of this run."""
    tags = {TAG_BENCH: bench, TAG_LINE: line}
    if Path("dvc.lock").is_file():
        tags[TAG_DVC_LOCK] = file_sha256(Path("dvc.lock"))
    if os.environ.get(DVC_EXPERIMENT_ENV):
        tags["omni_r1.dvc_experiment"] = os.environ[DVC_EXPERIMENT_ENV]
    return tags


def reevaluate_champion(cfg: Config, client: Any, champion: Any, bench: str) -> float:
    """Score the champion's registered model on the current Omni-Bench; update its tags; return its average."""
    from omni_r1.eval.evaluate import evaluate_items, load_bench
    from omni_r1.eval.judges import build_judge

    model = mlflow.pyfunc.load_model(f"models:/{champion.name}/{champion.version}")
    served = model.unwrap_python_model()
    dataset = cfg.eval.dataset
    items = load_bench(
        Path(cfg.data.prepared_dir) / dataset, Path(cfg.data.encoded_dir) / dataset, cfg.eval.max_per_slice
    )
    served.omni.model.eval()
    result = evaluate_items(served.omni, items, cfg, build_judge(cfg.judge, cfg.reward))
    for key, value in result.metrics.items():
        client.set_model_version_tag(champion.name, champion.version, f"{TAG_METRIC_PREFIX}{key}", repr(float(value)))
    client.set_model_version_tag(champion.name, champion.version, TAG_BENCH, bench)
    return float(result.metrics["average"])


def champion_on_bench(cfg: Config, client: Any, champion: Any, bench: str) -> tuple[float | None, str | None]:
    """``(champion average on this bench, refusal reason)``; re-evaluates when the bench changed."""
    mismatch = bench_mismatch(champion, bench)
    if mismatch is None:
        return champion_average(champion), None
    try:
        return reevaluate_champion(cfg, client, champion, bench), None
    except (MlflowException, OSError, RuntimeError, KeyError, ValueError) as err:
        return None, f"{mismatch}, and it cannot be re-evaluated ({type(err).__name__}: {err}); champion kept"


def checkpoint_uri(cfg: Config, folder: Path) -> str:
    """The one stored copy: the ``s3://`` upload when storage is on, else the DVC-tracked folder."""
    if cfg.storage.s3_uri:
        return log_checkpoint(folder, CHECKPOINT_ARTIFACT, cfg.storage)
    return folder.resolve().as_uri()


def run(cfg: Config, overlays: Sequence[Path] = ()) -> dict[str, Any]:
    """Register the best checkpoint; return the summary written to ``promote.json``."""
    from omni_r1.serving import log_served_model

    results = read_omnibench_metrics(cfg)
    best = best_candidate(results, cfg.promote.include_ablations)
    if best is None:
        raise FileNotFoundError(f"no evaluated checkpoint to promote under {cfg.paths.metrics_dir}")
    folder = best.ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"{folder}: checkpoint of {best.ref.name} (average {best.average:.4f}) not found")
    name = cfg.tracking.registered_model
    line, why = run_line(os.environ.get(DVC_EXPERIMENT_ENV), overlays, params_changed())
    data_tags = data_manifest_tags(cfg.paths.metrics_dir)
    bench = bench_version(data_tags, DATA_TAG_PREFIX, cfg.eval.dataset)
    tags = {**version_tags(best, data_tags, git_sha()), **lineage_tags(bench, line)}
    run_tags = {"omni_r1.track": best.ref.track, "omni_r1.step": best.ref.step, TAG_LINE: line}
    with stage_run(cfg, "promote", run_name=f"promote-{best.ref.name}", tags=run_tags):
        client = MlflowClient(tracking_uri(cfg))
        champion = champion_version(cfg)
        previous, refusal = None, None
        if line != EXPERIMENT_LINE and champion is not None:
            previous, refusal = champion_on_bench(cfg, client, champion, bench)
        info = log_served_model(cfg, folder, checkpoint_uri(cfg, folder), name, tags)
        version = str(info.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        promoted = line != EXPERIMENT_LINE and refusal is None and beats(best.average, previous, cfg.promote.min_improvement)
        if promoted:
            client.set_registered_model_alias(name, cfg.tracking.champion_alias, version)
        if line == EXPERIMENT_LINE:
            client.set_registered_model_alias(name, cfg.tracking.challenger_alias, version)
        mlflow.log_metrics({"promote.average": best.average, "promote.promoted": float(promoted)})
        mlflow.set_tags({"omni_r1.registered_version": version, TAG_AVERAGE: repr(best.average)})
    summary = {
        "checkpoint": best.ref.name,
        "version": int(version),
        "model_uri": f"models:/{name}/{version}",
        "average": best.average,
        "line": line,
        "experiment_reason": why or None,
        "omnibench_version": bench,
        "champion_version": int(champion.version) if champion is not None else None,
        "champion_average": previous if previous is None or previous != float("-inf") else None,
        "promoted": promoted,
        "refused": refusal,
    }
    path = Path(cfg.paths.metrics_dir) / "promote.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
