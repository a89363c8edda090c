#!/usr/bin/env bash
# Resolve the cluster image's requirements together with the project's job dependencies for
# Linux x86_64 (glibc 2.35, the image's Ubuntu 22.04) / CPython 3.11, installing and building
# nothing: pip reads wheel metadata only and writes its resolution report.
set -euo pipefail
cd "$(dirname "$0")/../../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 infra/images/verl/job_requirements.py > "$work/project.txt"
platforms=(--platform linux_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for glibc in $(seq 5 35); do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
python3 -m pip install --dry-run --ignore-installed --quiet --report "$work/report.json" \
  --python-version 3.11 --implementation cp --only-binary=:all: "${platforms[@]}" \
  -r infra/images/verl/requirements.txt -r "$work/project.txt"
python3 - "$work/report.json" <<'PY'
import json, sys
installs = json.load(open(sys.argv[1]))["install"]
versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}
print(len(versions), "packages resolved")
for name in ("verl", "vllm", "torch", "transformers", "ray", "mlflow", "prefect", "dvc"):
    print(f"  {name} {versions.get(name)}")
PY
