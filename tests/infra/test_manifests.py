"""Static checks of infra/: the compose file, its .env.example and the Kubernetes manifests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
SERVING = {"postgres", "seaweedfs", "mlflow", "redis", "prefect-server", "prefect-services", "prefect-worker",
           "prefect-worker-gpu"}  # fmt: skip
PINNED_TAG = re.compile(r"^[^\s:]+:[^:@\s]*\d+\.\d+[^:@\s]*(@sha256:[0-9a-f]{64})?$")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?-[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def env_example() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value for key, value in pairs}


def test_every_service_has_an_image_and_serving_ones_a_healthcheck(compose):
    services = compose["services"]
    assert SERVING | {"create-buckets"} == set(services)
    for name, service in services.items():
        assert service.get("image"), f"{name}: no image"
    for name in SERVING:
        assert "test" in services[name].get("healthcheck", {}), f"{name}: no healthcheck"


def test_dependencies_wait_for_health_or_completion(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "create-buckets" else "service_healthy"
            assert spec["condition"] == expected, f"{name} → {dependency}"
    assert "create-buckets" in services["mlflow"]["depends_on"]


def test_mlflow_uses_postgres_and_s3_artifacts(compose):
    command = " ".join(compose["services"]["mlflow"]["command"])
    assert 'export MLFLOW_BACKEND_STORE_URI="postgresql://' in command  # the store URI is an environment variable
    assert "--artifacts-destination=s3://" in command


def test_published_ports_bind_loopback_by_default(compose):
    published = [(name, port) for name, service in compose["services"].items() for port in service.get("ports", [])]
    assert published, "no published ports"
    for name, port in published:
        assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {port} binds every interface"
    assert env_example()["BIND_ADDRESS"] == "127.0.0.1"


def test_secrets_come_from_files_never_from_command_lines(compose):
    text = (INFRA / "compose.yaml").read_text()
    for variable in ("POSTGRES_PASSWORD", "S3_SECRET_KEY", "S3_ACCESS_KEY"):
        assert "${" + variable not in text, f"{variable} interpolated by compose"
        assert variable not in env_example(), f"{variable} in .env.example"
    assert {spec["file"] for spec in compose["secrets"].values()} == {
        "./secrets/postgres_password", "./secrets/s3_access_key", "./secrets/s3_secret_key",
    }  # fmt: skip
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    for name, service in compose["services"].items():
        script = " ".join(service.get("command") or []) if isinstance(service.get("command"), list) else str(service.get("command") or "")
        for reader in ('eval "$$SECRET_ENV"', 'eval "$$DB_SECRET_ENV"'):  # reads the files inside the container
            script = script.replace(reader, "")
        executed = script.rpartition("exec ")[2]  # the argv of the long-running program (or the whole script)
        for secret in ("PASSWORD", "SECRET", "/run/secrets", "ACCESS_KEY"):
            assert secret not in executed, f"{name}: {secret} on the command line: {executed}"
        for value in (service.get("environment") or {}).values():
            assert "change-me" not in str(value)


def test_every_image_is_pinned_to_a_version(compose):
    for name, service in compose["services"].items():
        assert PINNED_TAG.match(service["image"]), f"{name}: {service['image']} is not pinned to a version"
    extra = compose["services"]["prefect-server"]["environment"]["EXTRA_PIP_PACKAGES"]
    assert all("==" in package for package in extra.split()), extra
    for dockerfile in (INFRA / "mlflow" / "Dockerfile", INFRA / "worker" / "Dockerfile"):
        base = next(line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM"))
        assert PINNED_TAG.match(base), f"{dockerfile}: base image {base} is not pinned"


def test_gpu_worker_reserves_nvidia_devices(compose):
    worker = compose["services"]["prefect-worker-gpu"]
    assert worker["profiles"] == ["gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["environment"]["WORK_POOL"] == "omni-r1-gpu"
    assert "prefect-worker" not in worker.get("profiles", []) and "profiles" not in compose["services"]["prefect-worker"]
    assert "minio" not in (INFRA / "compose.yaml").read_text().lower()


def test_every_compose_variable_has_an_env_example_entry():
    text = (INFRA / "compose.yaml").read_text()
    used = set(VARIABLE.findall(text))
    assert used, "compose.yaml uses no variables"
    missing = used - set(env_example())
    assert not missing, f"missing from infra/.env.example: {sorted(missing)}"


def k8s_documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted((INFRA / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_k8s_documents_have_the_required_keys():
    documents = k8s_documents()
    assert {doc["kind"] for _, doc in documents} >= {"RayJob", "Job"}
    for name, doc in documents:
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{name}: {key} missing"
        assert doc["metadata"].get("name"), f"{name}: metadata.name missing"
        assert "spec" in doc or doc["kind"] == "Secret", f"{name}: spec missing"


def test_generated_rayjob_has_no_placeholder_and_every_named_module_imports(cfg, tmp_path):
    """The RayJob is generated from params.yaml and the cluster-shape template (omni_r1.verl.launch)."""
    import importlib

    pytest.importorskip("verl")
    from omni_r1.verl.launch import (
        MANIFEST_TEMPLATE,
        VerlJob,
        named_modules,
        placeholders,
        rayjob_manifest,
    )
    from omni_r1.verl.settings import VerlPaths, verl_overrides

    paths = VerlPaths("/w/ckpt", "/w/train.parquet", "/w/train.parquet", "/w/verl", "/w/agent_loops.yaml")
    job = VerlJob("omni_r1", tmp_path, tmp_path / "t.parquet", tmp_path / "a.yaml", tmp_path / "c.yaml",
                  verl_overrides(cfg, "omni_r1", paths), paths)  # fmt: skip
    template = yaml.safe_load(MANIFEST_TEMPLATE.read_text())
    assert "entrypoint" not in template["spec"]  # the template holds no run values
    manifest = rayjob_manifest(cfg, job, {"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}, template)
    text = yaml.safe_dump(manifest)
    assert placeholders(text) == []
    spec = manifest["spec"]
    assert spec["entrypoint"].startswith("python3 -m verl.trainer.main_ppo ")
    modules = named_modules(spec["entrypoint"])
    assert {"verl.trainer.main_ppo", "omni_r1.verl.actor", "omni_r1.verl.reward", "omni_r1.verl.dataset"} <= set(modules)
    for module in modules:
        importlib.import_module(module)
    workers = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == cfg.perpo.verl.nnodes
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == str(cfg.perpo.verl.n_gpus_per_node)
    assert f"trainer.n_gpus_per_node={cfg.perpo.verl.n_gpus_per_node}" in spec["entrypoint"]


def test_pesft_job_uses_torchrun_on_the_cli():
    job = next(doc for _, doc in k8s_documents() if doc["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[0] == "torchrun"
    assert any(arg.startswith("--nproc_per_node") for arg in command)
    assert command[command.index("-m") + 1 : command.index("-m") + 3] == ["omni_r1.cli", "pesft"]
    assert command[command.index("--track") + 1] == "omni_r1"
