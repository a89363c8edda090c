"""Per-stage wall time of the last pipeline run, read from the MLflow run start and end times.

Which runs: when the newest pipeline parent run (tag ``omni_r1.stage`` = ``pipeline``, opened
by the Prefect flow) began after every top-level stage run, its child stage runs; otherwise
(plain ``dvc repro``: stage runs are top-level) the newest top-level run of every run name (``prepare``,
``pesft``, ``evaluate-omni_r1_10``, ...), i.e. the last execution of each stage.

Printed: one row per stage run in start order (seconds, share of the span), the sum of the
stage runs, the span (first start to last end, or the parent run's own start and end) and the
start-up share: the part of the span outside every stage run (process start, imports, DVC's
hashing between stages), which a stage's own run does not see. Runs still open have no
duration and are listed as such.

Usage: ``python -m benchmarks.pipeline_profile [params.yaml]`` or ``python -m benchmarks
pipeline_profile``; the tracking URI and experiment come from ``tracking`` in params.yaml
(``MLFLOW_TRACKING_URI`` wins). Without a recorded run it says so and exits 0.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from omni_r1.config import load_config
from omni_r1.tracking import PARENT_RUN_TAG, tracking_uri

STAGE_TAG = "omni_r1.stage"
PIPELINE_STAGE = "pipeline"


@dataclass(frozen=True)
class RunTime:
    """One MLflow run's name and times (milliseconds since the epoch; ``end_ms`` None while open)."""

    run_id: str
    name: str
    stage: str
    parent_id: str | None
    start_ms: int
    end_ms: int | None

    @property
    def seconds(self) -> float | None:
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000.0


def read_runs(client: MlflowClient, experiment_id: str) -> list[RunTime]:
    """Every run of the experiment, newest first."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1000,
                                  page_token=token)  # fmt: skip
        for run in page:
            tags = run.data.tags
            runs.append(
                RunTime(run.info.run_id, run.info.run_name or run.info.run_id, tags.get(STAGE_TAG, ""),
                        tags.get(PARENT_RUN_TAG), run.info.start_time, run.info.end_time)
            )  # fmt: skip
        token = page.token
        if not token:
            return runs


def last_pipeline(runs: Sequence[RunTime]) -> tuple[RunTime | None, list[RunTime]]:
    """(parent run or None, its stage runs in start order), per the module docstring."""
    parents = [r for r in runs if r.stage == PIPELINE_STAGE]
    top_level = [r for r in runs if r.parent_id is None and r.stage != PIPELINE_STAGE]
    parent = max(parents, key=lambda r: r.start_ms, default=None)
    if parent is not None and all(r.start_ms < parent.start_ms for r in top_level):
        return parent, sorted((r for r in runs if r.parent_id == parent.run_id), key=lambda r: r.start_ms)
    latest: dict[str, RunTime] = {}
    for run in top_level:
        if run.name not in latest or run.start_ms > latest[run.name].start_ms:
            latest[run.name] = run
    return None, sorted(latest.values(), key=lambda r: r.start_ms)


def profile_table(parent: RunTime | None, stages: Sequence[RunTime]) -> str:
    """The printed table: stage rows, the sum of stage runs, the span and the start-up share."""
    finished = [r for r in stages if r.end_ms is not None]
    if parent is not None and parent.end_ms is not None:
        span_ms = parent.end_ms - parent.start_ms
    else:
        span_ms = (max(r.end_ms for r in finished) - min(r.start_ms for r in stages)) if finished else 0
    span = span_ms / 1000.0
    lines = [f"{'stage run':<40} {'seconds':>9} {'share':>7}"]
    for run in stages:
        seconds = run.seconds
        share = f"{100 * seconds / span:6.1f}%" if seconds is not None and span > 0 else "      –"
        lines.append(f"{run.name:<40} {'open' if seconds is None else f'{seconds:9.1f}':>9} {share}")
    in_stages = sum(r.seconds for r in finished)
    outside = max(span - in_stages, 0.0)
    lines.append(f"{'sum of stage runs':<40} {in_stages:9.1f}")
    lines.append(f"{'span (first start to last end)' if parent is None else 'pipeline run':<40} {span:9.1f}")
    share = f"{100 * outside / span:6.1f}%" if span > 0 else "      –"
    lines.append(f"{'start-up (outside every stage run)':<40} {outside:9.1f} {share}")
    return "\n".join(lines)


def missing_store(uri: str) -> bool:
    """A ``sqlite:///`` store whose file does not exist (opening it would create it)."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()


def main(params: str = "params.yaml") -> None:
    cfg = load_config(Path(params))
    uri = tracking_uri(cfg)
    if missing_store(uri):
        print(f"pipeline_profile: no pipeline run recorded: {uri} does not exist")
        return
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = read_runs(client, experiment.experiment_id) if experiment is not None else []
    parent, stages = last_pipeline(runs)
    if not stages:
        print(f"pipeline_profile: no pipeline run recorded in experiment {cfg.tracking.experiment!r} at {uri}")
        return
    source = f"parent run {parent.name} ({parent.run_id})" if parent else "newest run of every stage (no parent run)"
    print(f"pipeline_profile: {len(stages)} stage runs, {source}, {uri}")
    print(profile_table(parent, stages))


if __name__ == "__main__":
    main(*sys.argv[1:2])
