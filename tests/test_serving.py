"""The registered champion is a servable MLflow model: pyfunc in process, and over HTTP from
MLflow's scoring server on 127.0.0.1 (``mlflow models serve --env-manager local``)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from omni_r1.data.records import to_png
from omni_r1.serving import ChecksumError, log_served_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving_cfg(cfg, tmp_path: Path, log_files: bool):
    return cfg.model_copy(update={
        "run": cfg.run.model_copy(update={"device": "cpu"}),
        "generation": cfg.generation.model_copy(update={"max_new_tokens": 24}),
        "storage": cfg.storage.model_copy(update={"log_checkpoint_files": log_files}),
    })  # fmt: skip


def register_tiny(cfg, tmp_path: Path, folder_name: str = "checkpoint") -> tuple[Path, str]:
    """Save a tiny random checkpoint, log it as the pyfunc model, make it the champion."""
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.tiny import save_tiny

    folder = tmp_path / folder_name
    save_tiny(build_tiny_for_tests(seed=0), folder)
    mlflow.set_experiment("serving")
    with mlflow.start_run():
        info = log_served_model(cfg, folder, folder.resolve().as_uri(), cfg.tracking.registered_model, {"omni_r1.track": "omni_r1"})
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(cfg.tracking.registered_model, cfg.tracking.champion_alias, version)
    return folder, version


def image_b64(color: tuple[int, int, int]) -> str:
    return base64.b64encode(to_png(Image.new("RGB", (64, 64), color))).decode()


def test_reference_model_loads_the_one_copy_and_checks_its_hash(cfg, tmp_path, mlflow_tmp, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    cfg = serving_cfg(cfg, tmp_path, log_files=False)
    folder, version = register_tiny(cfg, tmp_path)
    uri = f"models:/{cfg.tracking.registered_model}@{cfg.tracking.champion_alias}"
    assert not any("checkpoint" in a.path for a in mlflow.artifacts.list_artifacts(uri))  # referenced, not copied

    model = mlflow.pyfunc.load_model(uri)
    assert [spec.name for spec in model.metadata.signature.inputs] == ["question", "images"]
    frame = pd.DataFrame({"question": ["How many bars?", "Which color?"], "images": [[image_b64((255, 0, 0))], []]})
    out = model.predict(frame)
    assert list(out.columns) == ["answer", "trajectory", "generated_images"] and len(out) == 2
    assert all(isinstance(text, str) for text in out["trajectory"])
    assert out["trajectory"].tolist() == model.predict(frame)["trajectory"].tolist()  # greedy

    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    with pytest.raises(ChecksumError, match="content hash"):
        mlflow.pyfunc.load_model(uri)


def test_champion_served_over_http_answers_a_request(cfg, tmp_path, mlflow_tmp, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = serving_cfg(cfg, tmp_path, log_files=True)
    register_tiny(cfg, tmp_path)
    uri = f"models:/{cfg.tracking.registered_model}@{cfg.tracking.champion_alias}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": mlflow_tmp}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log")
        body = {"dataframe_records": [{"question": "How many bars?", "images": [image_b64((0, 0, 255))]}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=300) as response:
            reply = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    (row,) = reply["predictions"]
    assert set(row) == {"answer", "trajectory", "generated_images"}
    expected = mlflow.pyfunc.load_model(uri).predict(
        __import__("pandas").DataFrame(body["dataframe_records"])
    )
    assert row["trajectory"] == expected["trajectory"][0] and row["answer"] == expected["answer"][0]


def wait_for(url: str, server: subprocess.Popen, log_path: Path, limit_s: float = 300.0) -> None:
    """Poll ``url`` until it answers 200; fail with the server log if the server exits first."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"scoring server exited {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1.0)
    pytest.fail(f"scoring server did not answer {url}:\n{log_path.read_text()[-3000:]}")
