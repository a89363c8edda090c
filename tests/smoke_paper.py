"""The paper-shape smoke: every stage for 1-2 steps on CPU under ``params/paper.yaml`` +
``params/smoke-paper.yaml`` (512 px images, 1024 codes each, 4096-token budgets, the real-source
adapters on small files in each upstream schema, a tiny-width model).

``make smoke-paper`` runs it in the repository; ``tests/test_smoke_paper.py`` runs it in a
temporary copy of the parameter files. Outputs go under ``smoke/``.

    python tests/smoke_paper.py [root]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

OVERLAYS = ("params/paper.yaml", "params/smoke-paper.yaml")
SOURCE_ROWS = 4  # records written per source (upstream_fixtures.write_all)
MODEL = "smoke/checkpoints/omni_r1/perpo/step_2"  # the last PeRPO checkpoint of the smoke

# Every command of the pipeline, in dvc.yaml's order, plus the paper-only entry points.
COMMANDS: list[list[str]] = [
    ["gallery"],
    ["prepare"],
    ["tokenizer"],
    ["base"],
    ["encode"],
    ["bootstrap"],
    ["pesft", "--track", "omni_r1"],
    ["pesft", "--track", "omni_r1_zero"],
    ["perpo", "--track", "omni_r1"],
    ["evaluate", "--track", "omni_r1", "--step", "2"],
    ["evaluate", "--model", MODEL, "--bench", "smoke/sources/omni-bench"],
    ["general-bench", "--model", MODEL],
    ["report"],
    ["promote"],
    ["plan"],
]


def run(root: Path, executable: str = "omni-r1") -> dict[str, float]:
    """Run every command in ``root`` (which holds params.yaml and params/); return seconds per command."""
    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from upstream_fixtures import write_all

    shutil.rmtree(root / "smoke", ignore_errors=True)
    write_all(root / "smoke" / "sources", SOURCE_ROWS)
    overlays = [arg for path in OVERLAYS for arg in ("--overlay", path)]
    seconds = {}
    for command in COMMANDS:
        name = " ".join(command)
        print(f"smoke-paper: omni-r1 {name}", flush=True)
        start = time.perf_counter()
        subprocess.run([executable, *command, *overlays], cwd=root, check=True)
        seconds[name] = time.perf_counter() - start
    total = sum(seconds.values())
    print(f"smoke-paper: {len(COMMANDS)} commands in {total:.0f} s", flush=True)
    return seconds


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd(), shutil.which("omni-r1") or "omni-r1")
