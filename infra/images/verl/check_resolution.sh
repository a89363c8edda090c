#!/usr/bin/env bash
# Resolve the cluster image's requirements together with this project's dependencies for
# Linux x86_64 / CPython 3.11, installing and building nothing (pip reads wheel metadata only).
set -euo pipefail
cd "$(dirname "$0")/../../.."
project_requirements=$(mktemp)
trap 'rm -f "$project_requirements"' EXIT
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > "$project_requirements"
python3 -m pip install --dry-run --ignore-installed --quiet --report - \
  --python-version 3.11 --implementation cp --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 \
  -r infra/images/verl/requirements.txt -r "$project_requirements" \
  | python3 -c '
import json, sys
installs = json.load(sys.stdin)["install"]
versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}
print(len(versions), "packages resolved")
for name in ("verl", "vllm", "torch", "transformers", "ray", "mlflow", "prefect", "dvc"):
    print(name, versions.get(name))
'
