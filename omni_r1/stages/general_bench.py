"""Stage ``general_bench``: Table 3's general benchmarks for one model (paper §5, Table 3).

What it does, for ``--model <hub id or folder>``:

1. loads the model (``load_omni``) and wraps it as a harness model
   (:class:`omni_r1.eval.vlmevalkit.OmniR1VLM`: images encoded into the prompt, final answer
   returned), decoding under ``eval.*`` (template, interleaved or text-only, sampling, budget);
2. reads each benchmark of ``general_bench.benchmarks`` (name → local copy in the upstream
   format, see :mod:`omni_r1.eval.general`), the first ``general_bench.max_items`` items of each
   (0 = all);
3. scores them with the harness metrics: POPE as F1 of "yes", MME-P / MME-R as summed
   (acc + acc+) x 100;
4. writes ``<paths.metrics_dir>/general/<name>.json`` (scores, protocol) and rewrites
   ``<report.out_dir>/general_bench.md``, a table shaped like Table 3 with one row per model.

Where it differs from the paper: the paper runs VLMEvalKit; here the benchmarks available as
local copies are scored by the project (lmms-eval runs them all through
:mod:`omni_r1.eval.lmms_plugin` where it is installed). Columns not run are shown as "–".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import torch

from omni_r1.config import Config
from omni_r1.eval.evaluate import protocol_of
from omni_r1.eval.general import (
    message_of,
    mme_metrics,
    pope_metrics,
    read_benchmark,
    table3_markdown,
    table3_row,
    yes_no,
)
from omni_r1.tracking import stage_run

GENERAL_DIR = "general"
REPORT_FILE = "general_bench.md"


def score_benchmark(adapter: Any, name: str, path: str, max_items: int) -> tuple[dict[str, float], int]:
    """Answer and score one benchmark: (metrics, number of items)."""
    items = []
    for item in read_benchmark(name, path):
        if max_items and len(items) >= max_items:
            break
        items.append(item)
    predictions = [yes_no(adapter.generate(message_of(item), dataset=name)) for item in items]
    if name == "pope":
        return pope_metrics([item.answer for item in items], predictions), len(items)
    return mme_metrics(items, predictions), len(items)


def write_report(metrics_dir: Path, out_dir: Path) -> Path:
    rows = {}
    for path in sorted(metrics_dir.glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        rows[entry["model"]] = table3_row(entry["results"])
    report = out_dir / REPORT_FILE
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        "# General benchmarks (Table 3)\n\nMME-P / MME-R: summed (acc + acc+) x 100; POPE: F1 x 100; "
        "\"–\": not run.\n\n" + table3_markdown(rows) + "\n", encoding="utf-8",
    )  # fmt: skip
    return report


def run(cfg: Config, model: str, label: str | None = None) -> dict[str, Any]:
    """Score ``model`` on every configured benchmark; return ``{"results", "metrics_path", "report"}``."""
    from omni_r1.eval.vlmevalkit import OmniR1VLM
    from omni_r1.model.loading import load_omni
    from omni_r1.stages.evaluate import model_slug

    if not cfg.general_bench.benchmarks:
        raise ValueError("general_bench.benchmarks is empty: name at least one local copy (pope, mme)")
    name = label or model_slug(model)
    with stage_run(cfg, "general_bench", run_name=f"general-bench-{name}", tags={"omni_r1.model": model}):
        torch.manual_seed(cfg.run.seed)
        omni = load_omni(cfg, model_dir=model)
        omni.model.eval()
        adapter = OmniR1VLM(omni, cfg.generation, cfg.eval, cfg.eval.batch_size)
        results, counts = {}, {}
        for benchmark, path in cfg.general_bench.benchmarks.items():
            results[benchmark], counts[benchmark] = score_benchmark(adapter, benchmark, path, cfg.general_bench.max_items)
            mlflow.log_metrics({f"general.{benchmark}.{k}": v for k, v in results[benchmark].items()})
        metrics_dir = Path(cfg.paths.metrics_dir) / GENERAL_DIR
        metrics_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = metrics_dir / f"{name}.json"
        entry = {"model": model, "results": results, "items": counts, "protocol": protocol_of(cfg.eval, "exact yes/no")}
        metrics_path.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
        report = write_report(metrics_dir, Path(cfg.report.out_dir))
        mlflow.log_artifact(str(metrics_path), "general_bench")
        mlflow.log_artifact(str(report), "general_bench")
    return {"results": results, "metrics_path": metrics_path, "report": report}
