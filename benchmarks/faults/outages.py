"""Storage outages: the S3 endpoint on 127.0.0.1 is SIGKILLed while data moves to it and
restarted after a pause.

The endpoint is a TCP proxy process in front of moto's S3 server (``python -m moto.server``):
killing it drops every open connection and refuses new ones, like a store that goes down,
while the objects stored before the outage stay (moto keeps them in the memory of its own
process, which a kill of moto itself would erase). Three writers:

- checkpoint upload (:func:`omni_r1.storage.upload_dir`, its own retries; one more call if
  they ran out);
- MLflow artifact logging of a checkpoint folder (:func:`omni_r1.tracking.log_checkpoint`
  with an ``s3://`` artifact root);
- ``dvc push`` of a tracked folder to an S3 remote (run again after the outage).

Survived: after the retry every file reads back byte-identical (``download_dir``, MLflow's
``download_artifacts``, ``dvc pull`` into an empty cache) and no object under a final key has
other bytes than its source (no partial object visible).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.faults.exposure import SECRETS

BUCKET = "faults"
FAKE_KEYS = {  # moto accepts any keys: the campaign's fake secrets, scanned for afterwards
    "AWS_ACCESS_KEY_ID": SECRETS["AWS_ACCESS_KEY_ID"],
    "AWS_SECRET_ACCESS_KEY": SECRETS["AWS_SECRET_ACCESS_KEY"],
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoProcess:
    """moto's S3 server (``python -m moto.server``) on 127.0.0.1, reached through a TCP proxy
    process (:mod:`benchmarks.faults.tcp_proxy`) that is SIGKILLed and restarted on demand:
    the endpoint goes away with every open connection, the stored objects stay."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port, self.log_path = port, log_path
        self.backend_port = free_port()
        self.backend: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.traffic_path = log_path.with_suffix(".traffic")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], port: int) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        process = subprocess.Popen(args, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return process
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing listens on port {port}; see {self.log_path}")

    def start(self) -> None:
        if self.backend is None:
            self.backend = self._spawn(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.backend_port)], self.backend_port
            )
            import boto3

            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.backend_port}", **boto_keys()).create_bucket(Bucket=BUCKET)
        self.traffic_path.unlink(missing_ok=True)
        self.proxy = self._spawn(
            [sys.executable, "-m", "benchmarks.faults.tcp_proxy", str(self.port), str(self.backend_port),
             str(self.traffic_path)], self.port,
        )  # fmt: skip

    def traffic(self) -> int:
        """Bytes the running proxy has forwarded towards the server (256 KiB steps)."""
        try:
            return int(self.traffic_path.read_text(encoding="utf-8") or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def kill(self) -> None:
        if self.proxy is not None:
            self.proxy.kill()
            self.proxy.wait()

    def stop(self) -> None:
        self.kill()
        if self.backend is not None:
            self.backend.kill()
            self.backend.wait()


def boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_KEYS["AWS_SECRET_ACCESS_KEY"],
        "region_name": FAKE_KEYS["AWS_DEFAULT_REGION"],
    }


@dataclass
class OutageFigures:
    writer: str
    outages: int = 0
    survived: int = 0
    first_try_completed: int = 0  # the writer's own retries were enough
    missed: int = 0  # the kill came after the writer had finished (no outage during the transfer)
    partial_objects: int = 0
    partial_objects_checked: bool = False  # final keys listed and compared with their content
    notes: list[str] = field(default_factory=list)


def tree_digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".dvc" not in path.relative_to(folder).parts
    }


def payload(folder: Path, rng: random.Random, files: int, megabytes: int) -> Path:
    """A checkpoint-like folder of random files (one large enough for multipart)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        size = megabytes * 2**20 if index == 0 else rng.randint(1, 4096)
        (folder / f"part-{index}.bin").write_bytes(rng.randbytes(size))
    return folder


def with_outage(
    server: MotoProcess, write: Callable[[], Any], delay: float, pause: float, after_bytes: int | None = None
) -> tuple[bool, str, bool]:
    """Run ``write`` here while another thread kills the server after ``delay`` s and restarts it
    ``pause`` s later (the writer stays on this thread: MLflow's active run is per thread).
    With ``after_bytes`` the kill waits instead until the proxy has forwarded that many bytes of
    this write (for writers with a start-up cost of their own, such as a ``dvc`` process).

    Returns:
        (``write`` returned, its error if not, whether the kill came before ``write`` ended).
    """
    killed_at: list[float] = []

    baseline = server.traffic()
    write_done = threading.Event()

    def outage() -> None:
        if after_bytes is None:
            time.sleep(delay)
        else:
            deadline = time.monotonic() + 120
            while server.traffic() < baseline + after_bytes and time.monotonic() < deadline and not write_done.is_set():
                time.sleep(0.01)
        server.kill()
        killed_at.append(time.monotonic())
        time.sleep(pause)
        server.start()

    thread = threading.Thread(target=outage)
    thread.start()
    error = ""
    try:
        write()
    except Exception as err:  # noqa: BLE001 - the figure is whether a retry completes
        error = f"{type(err).__name__}: {err}"
    ended = time.monotonic()
    write_done.set()  # a writer that ended before the threshold: stop waiting
    thread.join()
    return not error, error, bool(killed_at) and killed_at[0] < ended


def storage_settings(cfg: Any, server: MotoProcess) -> Any:
    return cfg.storage.model_copy(
        update={"s3_uri": f"s3://{BUCKET}/checkpoints", "endpoint_url": server.url, "multipart_threshold_mb": 5,
                "multipart_chunk_mb": 5, "backoff_seconds": 0.5}
    )  # fmt: skip


def partial_objects(client: Any, prefix: str, expected: dict[str, str]) -> int:
    """Objects under final keys whose bytes differ from their source file."""
    bad = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):].lstrip("/")
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            if expected.get(name) != hashlib.sha256(body).hexdigest():
                bad += 1
    return bad


def misnamed_dvc_objects(client: Any, prefix: str) -> int:
    """DVC remote objects (``files/md5/<2>/<30>``) whose bytes do not hash to their key."""
    bad = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            parts = item["Key"].split("/")
            if len(parts) < 2 or parts[-1].endswith(".dir"):  # directory listings hash as DVC writes them
                continue
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            bad += hashlib.md5(body).hexdigest() != parts[-2] + parts[-1]  # noqa: S324 - DVC's content address
    return bad


def count_outage(figures: OutageFigures, index: int, ok: bool, error: str, hit: bool, retry: Callable[[], Any]) -> None:
    """Tally one outage; a writer whose first call failed is called once more (that call must succeed)."""
    figures.outages += 1
    figures.missed += not hit
    figures.first_try_completed += ok
    if not ok:
        figures.notes.append(f"try {index}: first call failed ({error[:160]}); called again")
        retry()


def checkpoint_upload(cfg: Any, server: MotoProcess, root: Path, rng: random.Random, count: int) -> OutageFigures:
    import boto3

    from omni_r1 import storage as object_storage

    figures = OutageFigures("checkpoint upload (omni_r1.storage)", partial_objects_checked=True)
    settings = storage_settings(cfg, server)
    source = payload(root / "upload-src", rng, files=4, megabytes=24)
    expected = tree_digests(source)
    for index in range(count):
        client = object_storage.make_client(settings)
        destination = object_storage.parse_s3_uri(settings.s3_uri).child(f"try-{index}")
        ok, error, hit = with_outage(
            server, lambda c=client, d=destination: object_storage.upload_dir(c, source, d, settings),
            0.0, rng.uniform(0.5, 3.0), after_bytes=rng.randint(1, 16) * 2**20,  # of the 24 MiB file
        )  # fmt: skip
        count_outage(figures, index, ok, error, hit,
                     retry=lambda d=destination: object_storage.upload_dir(object_storage.make_client(settings), source, d, settings))  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=server.url, **boto_keys())
        figures.partial_objects += partial_objects(s3, destination.key, expected)
        back = root / f"upload-back-{index}"
        object_storage.download_dir(object_storage.make_client(settings), destination, back, settings)
        figures.survived += tree_digests(back) == expected
        shutil.rmtree(back)
    return figures


def mlflow_artifacts(cfg: Any, server: MotoProcess, root: Path, rng: random.Random, count: int) -> OutageFigures:
    import mlflow

    from omni_r1.tracking import log_checkpoint

    figures = OutageFigures("MLflow artifact logging (omni_r1.tracking.log_checkpoint)")
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = server.url
    mlflow.set_tracking_uri(f"sqlite:///{root / 'outage-mlflow.db'}")
    experiment = mlflow.create_experiment("faults-outage", artifact_location=f"s3://{BUCKET}/mlflow")
    source = payload(root / "artifact-src", rng, files=4, megabytes=24)
    expected = tree_digests(source)
    settings = cfg.storage.model_copy(update={"s3_uri": "", "log_checkpoint_files": True})
    for index in range(count):
        with mlflow.start_run(experiment_id=experiment) as run:
            ok, error, hit = with_outage(
                server, lambda: log_checkpoint(source, "checkpoint", settings), 0.0, rng.uniform(0.5, 3.0),
                after_bytes=rng.randint(1, 16) * 2**20,  # of the 24 MiB file: the kill lands mid-transfer
            )  # fmt: skip
            count_outage(figures, index, ok, error, hit, retry=lambda: log_checkpoint(source, "checkpoint", settings))
        back = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="checkpoint", dst_path=str(root / f"artifact-back-{index}")))
        figures.survived += tree_digests(back) == expected
        shutil.rmtree(root / f"artifact-back-{index}")
    mlflow.set_tracking_uri(None)
    return figures


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAKE_KEYS, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)


def dvc_push(server: MotoProcess, root: Path, rng: random.Random, count: int) -> OutageFigures:
    import boto3

    figures = OutageFigures("dvc push / dvc pull", partial_objects_checked=True)
    client = boto3.client("s3", endpoint_url=server.url, **boto_keys())
    project = root / "dvc-project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    for args in (["init", "-q"], ["remote", "add", "-d", "s3", f"s3://{BUCKET}/dvc"],
                 ["remote", "modify", "s3", "endpointurl", server.url]):  # fmt: skip
        dvc(args, project).check_returncode()
    for index in range(count):
        data = payload(project / f"data-{index}", rng, files=6, megabytes=16)
        expected = tree_digests(data)
        dvc(["add", "-q", data.name], project).check_returncode()
        result: dict[str, Any] = {}
        _, _, hit = with_outage(
            server, lambda r=result: r.update(push=dvc(["push", "-q", "-j", "2"], project)), 0.0, rng.uniform(0.5, 3.0),
            after_bytes=rng.randint(1, 12) * 2**20,  # of the 16 MiB file: the kill lands mid-push
        )  # fmt: skip
        figures.outages += 1
        figures.missed += not hit
        first = result.get("push")
        figures.first_try_completed += bool(first is not None and first.returncode == 0)
        if first is None or first.returncode != 0:
            again = dvc(["push", "-q"], project)
            if again.returncode != 0:
                figures.notes.append(f"try {index}: dvc push after the outage failed: {again.stderr[-300:]}")
                continue
        figures.partial_objects += misnamed_dvc_objects(client, "dvc/")
        shutil.rmtree(data)
        shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
        pulled = dvc(["pull", "-q", f"{data.name}.dvc"], project)
        if pulled.returncode != 0:
            figures.notes.append(f"try {index}: dvc pull failed: {pulled.stderr[-300:]}")
            continue
        figures.survived += tree_digests(data) == expected
    return figures


def run(cfg: Any, root: Path, count: int, seed: int, log: Callable[[str], None]) -> list[OutageFigures]:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    previous = {name: os.environ.get(name) for name in FAKE_KEYS}
    os.environ.update(FAKE_KEYS)
    server = MotoProcess(free_port(), root / "moto.log")
    server.start()
    try:
        results = []
        for name, writer in (
            ("upload", lambda: checkpoint_upload(cfg, server, root, rng, count)),
            ("mlflow", lambda: mlflow_artifacts(cfg, server, root, rng, count)),
            ("dvc", lambda: dvc_push(server, root, rng, count)),
        ):
            log(f"outages: {name}")
            results.append(writer())
            log(f"  {results[-1]}")
        return results
    finally:
        server.stop()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
