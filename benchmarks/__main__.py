"""Run every benchmark (``benchmarks/bench_*.py``) and print its one-line summary.

Usage: ``python -m benchmarks [NAME ...]`` — names without the ``bench_`` prefix. Also
``pipeline_profile``: per-stage seconds of the last pipeline run, read from MLflow (no run of
its own; it says so when none is recorded).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks

READERS = ("pipeline_profile",)  # report on recorded runs instead of timing code


def main(selected: list[str]) -> int:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_") or info.name in READERS
    )
    if selected:
        names = [n for n in names if n.removeprefix("bench_") in selected]
    failures = 0
    for name in names:
        started = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception as err:  # a broken benchmark must not hide the others
            failures += 1
            print(f"{name}: FAILED: {type(err).__name__}: {err}")
        print(f"  ({name} took {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
