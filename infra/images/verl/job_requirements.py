"""Print the project's dependencies (pyproject.toml) that a verl job imports, one per line.

The pipeline's orchestration dependencies stay out of the cluster image: prefect 3.8 needs
fastapi >= 0.139 while vllm 0.24 (pinned by verl[vllm]==0.9.1) needs fastapi < 0.137, and the
job runs neither Prefect nor DVC. Used by the Dockerfile and by check_resolution.sh.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ORCHESTRATION = {"prefect", "fastapi", "dvc"}


def job_requirements(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [dep for dep in dependencies if re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower() not in ORCHESTRATION]


if __name__ == "__main__":
    print("\n".join(job_requirements(Path(__file__).resolve().parents[3] / "pyproject.toml")))
