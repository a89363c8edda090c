"""Two verl PeRPO steps of a tiny random Chameleon on one GPU: step time and rollout tokens/s.

Usage (cluster image, one CUDA GPU; nothing is downloaded):

    python benchmarks/gpu/verl_perpo_tiny.py [--workdir /tmp/verl_perpo_tiny] [--steps 2]

What it does: in ``--workdir`` it saves a tiny random Chameleon as the PeSFT checkpoint,
writes 16 one-image prompts with their input codes as the prepared ``perpo_train`` set,
prepares the verl job from params.yaml (:func:`omni_r1.verl.launch.prepare_job`: parquet,
composed config, agent loop) with a one-GPU layout, runs verl's ``main_ppo`` with the job's
overrides (Ray started in-process, MLflow into a local sqlite file), and prints one line:
seconds per step and rollout (response) tokens per second, read from verl's metrics
(``perf/time_per_step``, ``timing_s/gen``, ``response_length/mean``) in the MLflow run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_inputs(workdir: Path, prompts: int) -> None:
    """Tiny PeSFT checkpoint + prepared and encoded PeRPO prompts under ``workdir``."""
    import io

    import torch
    from PIL import Image

    from omni_r1.config import load_config
    from omni_r1.data.codes import encode_dataset
    from omni_r1.data.records import Record, RecordStep
    from omni_r1.data.storage import write_records
    from omni_r1.model.images import encode_images
    from omni_r1.model.tiny import (
        assemble_tiny,
        fresh_vq,
        save_tiny,
        tiny_vq_config,
        train_text_tokenizer,
    )

    tiny = load_config().model.tiny  # the embedded default's shape, random weights
    corpus = ["THOUGHT 1: zoom in. ZOOM(0.1, 0.2, 0.3, 0.4)", "Final Answer: 3"]
    tokenizer = train_text_tokenizer(corpus, tiny.num_codes, tiny.text_vocab_size, 1)
    vqmodel, decoder = fresh_vq(tiny_vq_config(tiny), 0)
    omni = assemble_tiny(tiny, tokenizer, vqmodel, decoder, 0)
    save_tiny(omni, workdir / "checkpoints/omni_r1/pesft")
    generator = torch.Generator().manual_seed(0)
    records = []
    for index in range(prompts):
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=generator))
        png = io.BytesIO()
        Image.new("RGB", (32, 32), colour).save(png, format="PNG")
        records.append(Record(
            id=f"p{index}", source="bench", uni_task="natural", skills=[], question=f"How many squares? ({index})",
            choices=[], input_images=[png.getvalue()], steps=[RecordStep(rationale="count")],
            final_answer=str(index % 3 + 1), answer_type="number",
        ))  # fmt: skip
    write_records(records, workdir / "data/prepared/perpo_train", name="perpo_train", shard_size=len(records))
    key = {"tokenizer_hash": "bench", "manifest_sha256": "bench"}
    encode_dataset(workdir / "data/prepared/perpo_train", workdir / "data/encoded/perpo_train",
                   lambda images: encode_images(omni, images), key)  # fmt: skip


def bench_config(steps: int):
    """params.yaml with a two-step, one-GPU verl run of the tiny model."""
    from omni_r1.config import load_config, validate

    data = load_config(REPO / "params.yaml").model_dump(mode="json")
    data["perpo"].update(
        engine="verl", max_steps=steps, save_steps=[steps], train_batch_size=4, gen_batch_size=4,
        rollout_n=4, ppo_mini_batch_size=4, micro_batch_size=16, max_new_tokens=256,
    )  # fmt: skip
    data["perpo"]["verl"].update(nnodes=1, n_gpus_per_node=1, tensor_parallel_size=1, gpu_memory_utilization=0.3)
    return validate(data, source="verl_perpo_tiny")


def read_metrics(tracking_uri: str, experiment: str) -> dict[str, list[float]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1)[0]
    names = ("perf/time_per_step", "timing_s/gen", "response_length/mean", "critic/score/mean")
    return {name: [p.value for p in client.get_metric_history(run.info.run_id, name)] for name in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/verl_perpo_tiny"))
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)
    sys.path.insert(0, str(REPO))

    from omni_r1.verl.launch import entrypoint, prepare_job

    write_inputs(args.workdir, prompts=16)
    cfg = bench_config(args.steps)
    job = prepare_job(cfg, "omni_r1", args.workdir / "checkpoints/omni_r1/pesft")
    tracking_uri = f"sqlite:///{args.workdir / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO)}
    subprocess.run(entrypoint(job), check=True, env=env)

    metrics = read_metrics(tracking_uri, cfg.tracking.experiment)
    step_s = metrics["perf/time_per_step"]
    responses = cfg.perpo.gen_batch_size * cfg.perpo.rollout_n
    tokens_per_s = [
        length * responses / gen for length, gen in zip(metrics["response_length/mean"], metrics["timing_s/gen"], strict=False)
    ]
    print(
        f"verl_perpo_tiny: {len(step_s)} steps, step time {', '.join(f'{s:.2f}' for s in step_s)} s, "
        f"rollout {', '.join(f'{t:.0f}' for t in tokens_per_s)} response tokens/s, "
        f"reward {', '.join(f'{r:.3f}' for r in metrics['critic/score/mean'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
