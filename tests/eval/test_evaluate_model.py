"""`omni-r1 evaluate --model <folder> --bench <released parquet>` end to end, both decoding modes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from omni_r1 import cli
from omni_r1.eval.evaluate import read_predictions

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "released_bench_fixtures.py"


def _fixtures():
    spec = importlib.util.spec_from_file_location("released_bench_fixtures", FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("decoding", ["interleaved", "text_only"])
def test_evaluate_any_model_on_the_released_bench(repo_root, tmp_path, mlflow_tmp, monkeypatch, decoding) -> None:
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.tiny import save_tiny

    monkeypatch.chdir(tmp_path)
    folder = save_tiny(build_tiny_for_tests(seed=0), tmp_path / "checkpoint")
    bench = _fixtures().write_bench(tmp_path / "Omni-Bench" / "omni-bench.parquet", _fixtures().released_rows())
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({
        "eval": {"decoding": decoding, "prompt_template": "official", "max_new_tokens": 70,
                 "predictions_dir": str(tmp_path / "predictions")},
        "paths": {"metrics_dir": str(tmp_path / "metrics")},
        "report": {"out_dir": str(tmp_path / "reports")},
    }))  # fmt: skip
    result = CliRunner().invoke(cli.app, [
        "evaluate", "--model", str(folder), "--bench", str(bench.parent), "--name", f"tiny-{decoding}",
        "--params", str(repo_root / "params.yaml"), "--overlay", str(overlay),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_predictions(tmp_path / "predictions" / f"model_tiny-{decoding}.parquet")
    assert len(rows) == 4 and [r["gold"] for r in rows] == ["red", "4", "B", "1"]
    if decoding == "text_only":
        assert all(r["images"] == 0 for r in rows)
    entry = json.loads((tmp_path / "metrics" / "models" / f"tiny-{decoding}.json").read_text())
    assert entry["metrics"]["average"] == sum(r["verdict"] for r in rows) / 4
    assert entry["protocol"]["decoding"] == decoding and entry["protocol"]["judge"] == "rule"
    assert entry["protocol"]["prompt_template"] == "official"
    table = (tmp_path / "reports" / "models.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| {folder} |"))
    assert f"| {decoding} |" in row and f"| {entry['metrics']['average']:.3f} |" in row
