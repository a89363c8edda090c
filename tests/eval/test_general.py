"""Table 3's general benchmarks: upstream-format readers, harness metrics, the stage end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from omni_r1 import cli
from omni_r1.data.records import DataError
from omni_r1.eval.general import (
    GeneralItem,
    mme_metrics,
    pope_metrics,
    read_benchmark,
    table3_row,
    yes_no,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # fixtures shared with the paper-shape smoke
from general_bench_fixtures import image as _image  # noqa: E402
from general_bench_fixtures import write_mme, write_pope  # noqa: E402


def test_yes_no_is_the_first_yes_or_no_word() -> None:
    assert yes_no("Yes, there is.") == "yes" and yes_no("I think no") == "no"
    assert yes_no("nobody knows") is None and yes_no("") is None


def test_pope_f1_by_hand() -> None:
    # gold y y n n, predicted y n y (None → no): tp 1, fp 1, fn 1 → P = R = F1 = 0.5, acc 2/4
    metrics = pope_metrics(["yes", "yes", "no", "no"], ["yes", "no", "yes", None])
    assert metrics == {"f1": 0.5, "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "yes_ratio": 0.5}


def test_mme_score_is_accuracy_plus_accuracy_plus() -> None:
    def item(cat: str, image: str, answer: str) -> GeneralItem:
        return GeneralItem("mme", image, "q", answer, (), cat, image)

    items = [item("existence", "a", "yes"), item("existence", "a", "no"), item("existence", "b", "yes"),
             item("existence", "b", "no"), item("code_reasoning", "c", "yes"), item("code_reasoning", "c", "no")]  # fmt: skip
    scores = mme_metrics(items, ["yes", "no", "yes", "yes", "yes", None])
    # existence: 3/4 questions, 1/2 images → 125; code_reasoning: 1/2, 0/1 → 50
    assert scores == {"existence": 125.0, "code_reasoning": 50.0, "perception": 125.0, "cognition": 50.0}
    assert table3_row({"mme": scores, "pope": {"f1": 0.5}})["POPE"] == 50.0


def test_readers_keep_the_upstream_fields(tmp_path: Path) -> None:
    pope = list(read_benchmark("pope", write_pope(tmp_path / "pope" / "test-00000-of-00001.parquet")))
    assert [i.answer for i in pope] == ["yes", "no", "yes", "no"] and pope[0].question_id == "1"
    mme = list(read_benchmark("mme", write_mme(tmp_path / "mme" / "test-00000-of-00001.parquet").parent))
    assert [i.image_key for i in mme] == ["existence/1.jpg"] * 2 + ["code_reasoning/2.jpg"] * 2
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "pope" / "test-00000-of-00001.parquet").drop(["answer"])
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet.*'answer'.*missing_column"):
        list(read_benchmark("pope", tmp_path / "bad.parquet"))


def test_general_bench_stage_writes_a_table3_row(repo_root, tmp_path, mlflow_tmp, monkeypatch) -> None:
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.tiny import save_tiny

    monkeypatch.chdir(tmp_path)
    folder = save_tiny(build_tiny_for_tests(seed=0), tmp_path / "checkpoint")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({
        "general_bench": {"benchmarks": {"pope": str(write_pope(tmp_path / "pope" / "p.parquet")),
                                         "mme": str(write_mme(tmp_path / "mme" / "m.parquet"))}},
        "eval": {"decoding": "text_only", "max_new_tokens": 12, "batch_size": 2},
        "paths": {"metrics_dir": str(tmp_path / "metrics")}, "report": {"out_dir": str(tmp_path / "reports")},
    }))  # fmt: skip
    result = CliRunner().invoke(cli.app, ["general-bench", "--model", str(folder), "--name", "tiny",
                                          "--params", str(repo_root / "params.yaml"), "--overlay", str(overlay)])
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "metrics" / "general" / "tiny.json").read_text())
    assert entry["items"] == {"pope": 4, "mme": 4}
    assert 0.0 <= entry["results"]["pope"]["f1"] <= 1.0
    assert set(entry["results"]["mme"]) == {"existence", "code_reasoning", "perception", "cognition"}
    table = (tmp_path / "reports" / "general_bench.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| {folder} |"))
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert cells[4] == f"{100 * entry['results']['pope']['f1']:.1f}"  # POPE column, as F1
    assert cells[0] == f"{entry['results']['mme']['perception']:.1f}" and cells[2] == "–"  # MM-Vet not run


def test_lmms_request_becomes_a_harness_message() -> None:
    from omni_r1.eval.lmms_plugin import request_message

    image = _image((1, 2, 3))
    assert request_message([image, None], "Is it red?") == [{"type": "image", "value": image},
                                                           {"type": "text", "value": "Is it red?"}]


def test_lmms_plugin_is_registered_where_installed() -> None:
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (it pins another torch)")
    from lmms_eval.api.registry import MODEL_REGISTRY

    import omni_r1.eval.lmms_plugin  # noqa: F401  registers the model

    assert "omni_r1" in MODEL_REGISTRY
