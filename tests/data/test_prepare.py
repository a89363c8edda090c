"""Stage ``prepare``: the embedded synthetic default and the real-source path on fixtures."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest
from upstream_fixtures import LAYOUT, write_source

from omni_r1.data import synthetic
from omni_r1.data.omnibench import OVERLAP_REASON, input_hashes
from omni_r1.data.records import UNI_TASKS
from omni_r1.data.storage import read_manifest, read_records
from omni_r1.stages import prepare


def with_data(cfg, tmp_path, **updates):
    data = cfg.data.model_copy(update={"prepared_dir": str(tmp_path / "prepared"), **updates})
    paths = cfg.paths.model_copy(update={"metrics_dir": str(tmp_path / "metrics")})
    return cfg.model_copy(update={"data": data, "paths": paths})


def test_synthetic_default(cfg, tmp_path, mlflow_tmp):
    knobs = cfg.data.synthetic.model_copy(update={"train_per_task": 4, "perpo_per_task": 2, "omnibench_per_slice": 3})
    small = with_data(cfg, tmp_path, synthetic=knobs, shard_size=5)
    summaries = prepare.run(small)
    assert {k: v["total"] for k, v in summaries.items()} == {
        "sft_train": 16, "text_cot": 16, "perpo_train": 8, "omnibench": 12}
    root = tmp_path / "prepared"
    train = list(read_records(root / "sft_train"))
    assert len(read_manifest(root / "sft_train")["shards"]) == 4  # 16 records / 5 per shard
    assert all(r.text_cot and any(s.image for s in r.steps) for r in train)
    text_cot = list(read_records(root / "text_cot"))
    assert [r.id for r in text_cot] == [r.id for r in train] and all(not r.steps and r.text_cot for r in text_cot)
    bench = list(read_records(root / "omnibench"))
    assert {t: sum(r.meta["omnibench_slice"] == t for r in bench) for t in UNI_TASKS} == {t: 3 for t in UNI_TASKS}
    for record in bench:
        assert synthetic.solve(record.uni_task, record.meta) == record.final_answer
    training = train + list(read_records(root / "perpo_train"))
    assert not {r.id for r in bench} & {r.id for r in training}
    assert not {h for r in bench for h in input_hashes(r)} & {h for r in training for h in r.image_hashes()}
    metrics = json.loads((tmp_path / "metrics" / "data_omnibench.json").read_text())
    assert metrics["total"] == 12 and "image_hashes" not in metrics
    run = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], output_format="list")[0]
    assert run.data.metrics["data.sft_train.total"] == 16
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == set(summaries)


def test_real_sources_from_local_copies(cfg, tmp_path, mlflow_tmp):
    paths = {}
    for name, layout in LAYOUT.items():
        folder = tmp_path / "upstream" / name
        write_source(name, folder, [layout[0](i) for i in range(6)])
        paths[name] = str(folder)
    # Geometry3K ships a test split; its first problem reuses the image of train problem 0
    g_train = tmp_path / "upstream" / "geometry3k" / LAYOUT["geometry3k"][4]
    assert g_train.exists()
    test_rows = [LAYOUT["geometry3k"][0](i) for i in (0, 10, 11)]
    write_source("geometry3k", tmp_path / "g_test", test_rows)
    shutil.copy(tmp_path / "g_test" / g_train.name, g_train.parent / "test-00000-of-00001.parquet")
    counts = {"natural": {"vstar": 2}, "structured": {"arxivqa": 2, "chartqa": 2},
              "diagrammatic": {"geometry3k": 3, "mathvista": 2}, "vision_operational": {"vicbench": 3}}
    mix = cfg.data.perpo_mix.model_copy(update={"zebra_cot_fraction": 1.0, "arxivqa": 10, "geometry3k": 10})
    real = with_data(cfg, tmp_path, sources=list(LAYOUT), local_paths=paths, omnibench=counts, perpo_mix=mix)
    summaries = prepare.run(real)
    assert set(summaries) == {"omnibench", "sft_train", "text_cot", "perpo_train"}
    assert summaries["omnibench"]["counts"]["source"] == {
        "vstar": 2, "arxivqa": 2, "chartqa": 2, "geometry3k": 3, "mathvista": 2, "vicbench": 3}
    perpo = summaries["perpo_train"]
    # ArxivQA: 6 rows, 2 went to Omni-Bench; Geometry3K: train problem 0 shares an image
    assert perpo["counts"]["source"] == {"arxivqa": 4, "geometry3k": 5, "zebra_cot": 6}
    assert perpo["skipped"] == {OVERLAP_REASON: 3}
    assert summaries["text_cot"]["total"] == 6


def test_unknown_source_fails_before_any_work(cfg, tmp_path, mlflow_tmp):
    with pytest.raises(KeyError, match="unknown data source"):
        prepare.run(with_data(cfg, tmp_path, sources=["zebra_cot", "nope"]))
