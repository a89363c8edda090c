"""Stage commands of the toy DVC project used by the flow tests."""

import json
import sys
from pathlib import Path


def prepare() -> None:
    lines = Path("data/raw.txt").read_text().splitlines()
    Path("metrics").mkdir(exist_ok=True)
    manifest = {"records": len(lines), "chars": sum(len(line) for line in lines)}
    Path("metrics/data_toy.json").write_text(json.dumps(manifest))


def pesft(track: str) -> None:
    import mlflow

    from omni_r1 import tracking
    from omni_r1.config import load_config

    cfg = load_config("params.yaml")
    if cfg.run.seed == 13:  # the failure drill of the flow tests
        sys.exit("toy pesft: seed 13 fails on purpose")
    out = Path(f"checkpoints/pesft_{track}")
    out.mkdir(parents=True, exist_ok=True)
    with tracking.stage_run(cfg, f"pesft@{track}", tags={"omni_r1.track": track}):
        tracking.log_dataset_manifest("metrics/data_toy.json", "toy")
        (out / "weights.bin").write_bytes(bytes(range(256)) * 4)
        (out / "config.json").write_text(json.dumps({"track": track, "seed": cfg.run.seed}))
        mlflow.log_metric("loss", 1.0 / (1 + cfg.run.seed))
        tracking.log_checkpoint(out, f"checkpoints/pesft_{track}", cfg.storage)


def evaluate(track: str, step: str) -> None:
    manifest = json.loads(Path("metrics/data_toy.json").read_text())
    accuracy = (manifest["chars"] % 50 + int(step)) / 100
    result = {"natural": accuracy, "average": accuracy}
    Path(f"metrics/omnibench_{track}-{step}.json").write_text(json.dumps(result))


def promote() -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from omni_r1 import tracking
    from omni_r1.config import load_config

    cfg = load_config("params.yaml")
    scores = {
        path.stem: json.loads(path.read_text())["average"]
        for path in Path("metrics").glob("omnibench_*.json")
    }
    best = max(scores, key=scores.get)
    with tracking.stage_run(cfg, "promote") as run:
        mlflow.log_text(best, "model/checkpoint.txt")
        champion = tracking.champion_version(cfg)
        current = float(champion.tags.get("omnibench_average", "-1")) if champion else -1.0
        promoted = scores[best] > current
        if promoted:
            client = MlflowClient()
            name = cfg.tracking.registered_model
            if not client.search_registered_models(filter_string=f"name='{name}'"):
                client.create_registered_model(name)
            version = client.create_model_version(
                name,
                source=mlflow.get_artifact_uri("model"),
                run_id=run.info.run_id,
                tags={"omnibench_average": str(scores[best])},
            )
            client.set_registered_model_alias(name, cfg.tracking.champion_alias, version.version)
    Path("promotion.json").write_text(json.dumps({"best": best, "promoted": promoted}))


if __name__ == "__main__":
    {"prepare": prepare, "pesft": pesft, "evaluate": evaluate, "promote": promote}[sys.argv[1]](
        *sys.argv[2:]
    )
