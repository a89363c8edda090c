"""``omni-r1 perpo --engine verl --dry-run``: parquet, composed config, manifest, submit command;
merge-back of a verl checkpoint; verl metric names copied to the local engine's."""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from typer.testing import CliRunner
from verl_helpers import make_records

from omni_r1.cli import app
from omni_r1.training.perpo_report import summary_metrics
from omni_r1.verl.launch import (
    LOCAL_METRIC_NAMES,
    local_history,
    log_local_metric_names,
    merge_checkpoint,
    named_modules,
    placeholders,
)

pytest.importorskip("verl")


@pytest.fixture
def prepared_run(tmp_path, monkeypatch):
    """A checkout-shaped folder: tiny PeSFT checkpoint, prepared and encoded PeRPO prompts."""
    from tiny_models import build_tiny_for_tests

    from omni_r1.data.codes import encode_dataset
    from omni_r1.data.storage import write_records
    from omni_r1.model.images import encode_images
    from omni_r1.model.tiny import save_tiny

    monkeypatch.chdir(tmp_path)
    omni = build_tiny_for_tests(seed=0)
    save_tiny(omni, "checkpoints/omni_r1/pesft")
    write_records(make_records(4), "data/prepared/perpo_train", name="perpo_train", shard_size=4)
    key = {"tokenizer_hash": "test", "manifest_sha256": "test"}
    encode_dataset("data/prepared/perpo_train", "data/encoded/perpo_train", lambda im: encode_images(omni, im), key)
    return omni


def test_dry_run_writes_the_job_and_prints_the_submit_command(prepared_run, repo_root, mlflow_tmp):
    result = CliRunner().invoke(
        app,
        ["perpo", "--track", "omni_r1", "--engine", "verl", "--dry-run", "--manifest", "rayjob.yaml",
         "--params", str(repo_root / "params.yaml")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    command = shlex.split(result.output.strip().splitlines()[-1])
    assert command[:5] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265"]
    entry = command[command.index("--") + 1 :]
    assert entry[:3] == ["python3", "-m", "verl.trainer.main_ppo"]

    rows = pq.read_table("verl/omni_r1/perpo/train.parquet").to_pylist()
    assert [row["extra_info"]["record_id"] for row in rows] == [f"rec{i}" for i in range(4)]
    composed = yaml.safe_load(Path("verl/omni_r1/perpo/verl_config.yaml").read_text())
    assert composed["data"]["train_files"] == str(Path("verl/omni_r1/perpo/train.parquet").resolve())
    assert composed["actor_rollout_ref"]["model"]["path"] == str(Path("checkpoints/omni_r1/pesft").resolve())
    assert composed["algorithm"]["filter_groups"]["metric"] == "acc"
    assert f"data.train_files={composed['data']['train_files']}" in entry
    loops = yaml.safe_load(Path("verl/omni_r1/perpo/agent_loops.yaml").read_text())
    module, name = loops[0]["_target_"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)

    text = Path("rayjob.yaml").read_text()
    manifest = yaml.safe_load(text)
    assert manifest["kind"] == "RayJob" and placeholders(text) == []
    assert manifest["spec"]["entrypoint"] == shlex.join(entry)
    env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == mlflow_tmp
    modules = named_modules(manifest["spec"]["entrypoint"])
    assert modules == ["verl.trainer.main_ppo", "omni_r1.verl.dataset", "omni_r1.verl.actor", "omni_r1.verl.reward"]
    for module in modules:
        importlib.import_module(module)


def test_local_engine_refuses_dry_run(prepared_run, repo_root):
    result = CliRunner().invoke(app, ["perpo", "--track", "omni_r1", "--dry-run", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code != 0
    assert "apply to perpo.engine: verl" in str(result.exception)


def test_engine_flag_is_validated_with_the_engines_checks(repo_root, tmp_path):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["reward"]["fidelity_weight"] = 0.5  # valid for the local engine, not for verl
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["perpo", "--track", "omni_r1", "--engine", "verl", "--params", str(params)])
    assert result.exit_code == 1
    assert "reward.fidelity_weight > 0 is computed by the local engine" in result.output


def test_merge_back_turns_a_verl_actor_checkpoint_into_a_loadable_folder(tiny_checkpoint, tmp_path):
    from transformers import AutoModelForImageTextToText

    start, tiny = tiny_checkpoint
    (start / "vq_decoder.safetensors").write_bytes(b"decoder")  # carried over unchanged
    actor = tmp_path / "checkpoints/global_step_2/actor"
    (actor / "huggingface").mkdir(parents=True)
    tiny.model.config.save_pretrained(actor / "huggingface")
    tiny.tokenizer.save_pretrained(actor / "huggingface")
    trained = {name: tensor + 0.01 for name, tensor in tiny.model.state_dict().items()}
    torch.save(trained, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"world_size": 1}))

    target = merge_checkpoint(actor, tmp_path / "perpo/step_2", start)
    assert (target / "vq_decoder.safetensors").read_bytes() == b"decoder"
    merged = AutoModelForImageTextToText.from_pretrained(target, dtype=torch.float32)
    for name, tensor in merged.state_dict().items():
        # verl's merger writes bfloat16 weights
        torch.testing.assert_close(tensor, trained[name].bfloat16().float(), rtol=0, atol=0, msg=name)


def test_verl_metrics_are_copied_under_the_local_names(mlflow_tmp):
    import mlflow

    with mlflow.start_run() as run:
        for step, value in enumerate([0.1, 0.4], start=1):
            mlflow.log_metrics({"critic/score/mean": value, "actor/entropy": 2.0 * step}, step=step)
    client = mlflow.MlflowClient()
    copied = log_local_metric_names(client, run.info.run_id)
    assert copied == 2  # actor/entropy already has the local name
    history = client.get_metric_history(run.info.run_id, LOCAL_METRIC_NAMES["critic/score/mean"])
    assert [(point.step, point.value) for point in sorted(history, key=lambda p: p.step)] == [(1, 0.1), (2, 0.4)]
    steps = local_history(client, run.info.run_id)
    assert steps == [{"reward/mean": 0.1, "actor/entropy": 2.0}, {"reward/mean": 0.4, "actor/entropy": 4.0}]
    summary = summary_metrics(steps, None, window=1)
    assert summary["steps"] == 2 and summary["reward_step0"] == 0.1 and summary["reward_last"] == 0.4
