"""The Prefect CLI against `prefect server start` on 127.0.0.1: list commands and a deployment run.

The server, and `python -m flows.serve` (the repository's prefect.yaml deployments, served from this
checkout), run as subprocesses started and stopped here. The deployment run goes through
`prefect deployment run --watch` with an override, on the toy DVC project, so the run is a
DVC experiment whose name must show in the run's Prefect artifacts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.servers

BIN = Path(sys.executable).parent
LIST_COMMANDS = (
    ["work-pool", "ls"],
    ["deployment", "ls"],
    ["flow-run", "ls"],
    ["artifact", "ls"],
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready, process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prefect_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefect_cli")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("wb"),
    )
    try:
        wait_until(lambda: healthy(f"{api}/health"), server, "prefect server")
        yield env
    finally:
        stop(server)


def test_list_commands_work_against_the_server(prefect_server):
    for command in LIST_COMMANDS:
        result = prefect_cli(prefect_server, *command)
        assert result.returncode == 0, f"prefect {' '.join(command)}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
def test_a_deployment_run_through_the_cli(prefect_server, toy_project_factory, tmp_path):
    project = toy_project_factory("cli_run")
    server_log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(BIN / "python"), "-m", "flows.serve"], cwd=REPO_ROOT, env=prefect_server,
        stdout=server_log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "pipeline/pipeline" in prefect_cli(prefect_server, "deployment", "ls").stdout,
            serve, "python -m flows.serve",
        )
        params = {
            "project_dir": str(project),
            "selection": {"tracks": ["omni_r1"], "checkpoint_steps": [10]},
            "overrides": {"params": {"run.seed": 5}, "experiment_name": "cli-seed-5"},
        }
        run = prefect_cli(
            prefect_server, "deployment", "run", "pipeline/pipeline",
            "--params", json.dumps(params), "--watch", timeout=300,
        )
        listed_runs = prefect_cli(prefect_server, "flow-run", "ls", "--output", "json")
        artifact = prefect_cli(prefect_server, "artifact", "inspect", "mlflow-run", "--output", "json")
    finally:
        stop(serve)
        server_log.close()

    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{(tmp_path / 'serve.log').read_text()[-4000:]}"
    assert listed_runs.returncode == 0, listed_runs.stderr
    assert [run["state_type"] for run in json.loads(listed_runs.stdout)] == ["COMPLETED"]
    assert artifact.returncode == 0, artifact.stderr
    notes = [version["data"] for version in json.loads(artifact.stdout)]
    assert len(notes) == 1 and "DVC experiment: `cli-seed-5`" in notes[0]
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=project, capture_output=True, text=True, check=True,
    ).stdout
    names = [exp["name"] for rev in json.loads(shown) for exp in rev.get("experiments") or []]
    assert "cli-seed-5" in names
