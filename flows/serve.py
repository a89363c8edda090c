"""Serve the Prefect deployments of prefect.yaml from this machine: ``python -m flows.serve``.

Reads the deployments (name, entrypoint, schedules, parameters, tags) from ``prefect.yaml``
so schedules live in one place, builds each with ``flow.to_deployment`` and serves them all
with ``prefect.serve``: the process registers the deployments with the Prefect API in
``PREFECT_API_URL`` (start one with ``prefect server start``) and runs the flow runs that
the UI or the cron schedules create, in this checkout, until it is stopped. Work pools in
prefect.yaml are ignored here; they matter only for ``prefect deploy`` with a worker.
Serving is not part of the DVC graph, and the flows read params.yaml themselves, per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.flows import load_flow_from_entrypoint

PREFECT_YAML = Path("prefect.yaml")


def read_deployments(path: Path) -> list[dict[str, Any]]:
    """The ``deployments`` list of a prefect.yaml; the error names the file if it is missing."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    deployments = data.get("deployments")
    if not deployments:
        raise ValueError(f"{path}: no 'deployments' declared")
    return deployments


def build_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """``RunnerDeployment`` objects for every deployment in prefect.yaml."""
    built = []
    for spec in read_deployments(path):
        flow = load_flow_from_entrypoint(str(path.parent / spec["entrypoint"]))
        crons = [item["cron"] for item in spec.get("schedules") or [] if "cron" in item]
        built.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                cron=crons or None,
            )
        )
    return built


def main(path: Path = PREFECT_YAML) -> None:
    """Serve the deployments until interrupted (Ctrl-C)."""
    serve(*build_deployments(path))


if __name__ == "__main__":
    main()
