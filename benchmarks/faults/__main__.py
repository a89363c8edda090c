"""``python -m benchmarks.faults`` (``make faults``): run the fault campaign, write its figures.

Sections (all by default): kills, corrupt, fuzz, outages, concurrency, exposure. Writes
``reports/faults.md`` and ``metrics/faults.json`` (one figure per line). The campaign works in a
temporary folder; fake AWS keys and a fake judge API key are in the environment of everything
it runs, and every file it wrote (and the report) is scanned for them at the end.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread, forked children alike

import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.faults import report  # noqa: E402
from benchmarks.faults.exposure import SECRETS  # noqa: E402

SECTIONS = ("kills", "corrupt", "fuzz", "outages", "concurrency", "exposure")
REPO_ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--kills", type=int, default=20, help="kills per training stage")
    parser.add_argument("--stages", nargs="+", default=["tokenizer", "base", "pesft", "perpo"])
    parser.add_argument("--fuzz", type=int, default=100_000, help="fuzzed model outputs")
    parser.add_argument("--config-cases", type=int, default=1000, help="malformed params.yaml / overlay files")
    parser.add_argument("--corrupt", type=int, default=5, help="injections per target and kind")
    parser.add_argument("--outages", type=int, default=3, help="outages per writer")
    parser.add_argument("--trials", type=int, default=2, help="concurrent flow-run trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "faults.md")
    parser.add_argument("--metrics", type=Path, default=REPO_ROOT / "metrics" / "faults.json")
    parser.add_argument("--keep", action="store_true", help="keep the campaign's temporary folder")
    return parser.parse_args(argv)


def log(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    args = parse(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.update(SECRETS)
    root = Path(tempfile.mkdtemp(prefix="omni-r1-faults-"))
    log(f"fault campaign in {root}")
    started = time.perf_counter()
    results = report.Results(argv=argv)
    try:
        report.run_sections(args, root, results, log)
    finally:
        results.seconds = time.perf_counter() - started
        report.write(results, args.report, args.metrics, root, log)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if results.all_survived() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
