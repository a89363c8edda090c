"""Static checks of infra/: the compose file, its .env.example and the Kubernetes manifests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
SERVING = {"postgres", "seaweedfs", "mlflow", "redis", "prefect-server", "prefect-services", "prefect-worker"}
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
    assert "--backend-store-uri=postgresql://" in command
    assert "--artifacts-destination=s3://" in command
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
