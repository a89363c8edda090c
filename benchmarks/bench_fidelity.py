"""Functional-image fidelity cost per evaluated checkpoint on the embedded default's VQ shape.

Batch: 25 answers × 4 generated images = 100 images (BBOX, ZOOM, MARK, LINE chained on a
64 px scene), the default tiny VQ (``model.tiny``: 64 px, 8×8 grid, 512 codes, untrained
weights: the cost does not depend on them), executor and fidelity settings from params.yaml.
Timed: the scorer (executor renderings, one batched VQ encode, codes and embedding
comparison, one batched decode of generated + rendered codes for PSNR; random generated codes,
so every pair is decoded: the worst case) and the per-slice summary with bootstrap intervals.
Reported: wall seconds (best of 3), process CPU seconds, milliseconds per image.

Goal: under 5 CPU-seconds per 100 images for the scorer (process time, so the number does not
depend on what else the machine runs; on 2 idle cores wall time is about half of it).
"""

from __future__ import annotations

import time

import torch
from PIL import Image, ImageDraw

from omni_r1.config import load_config
from omni_r1.eval.fidelity import fidelity_metrics
from omni_r1.executor import Executor
from omni_r1.model.tiny import fresh_vq, tiny_vq_config
from omni_r1.rewards.fidelity import FidelityInput, score_fidelity, visual_codec

ANSWERS, IMAGES, REPEATS = 25, 4, 3
STEPS = (
    "THOUGHT 1: box.\nACTION: BBOX(0.1, 0.1, 0.4, 0.4)\n<image>\n"
    "THOUGHT 2: zoom.\nACTION: ZOOM(0.0, 0.0, 0.6, 0.6)\n<image>\n"
    "THOUGHT 3: mark.\nACTION: MARK(0.5, 0.5, \"a\")\n<image>\n"
    "THOUGHT 4: line.\nACTION: LINE(0.1, 0.9, 0.9, 0.1)\n<image>\nFinal Answer: 3"
)


def scene(index: int) -> Image.Image:
    image = Image.new("RGB", (64, 64), (230, 230, 230))
    ImageDraw.Draw(image).rectangle((index % 40, 10, index % 40 + 20, 40), fill=(40, 90, 200))
    return image


def main() -> None:
    cfg = load_config("params.yaml")
    vqmodel, decoder = fresh_vq(tiny_vq_config(cfg.model.tiny), seed=0)
    codec = visual_codec(vqmodel, decoder, cfg.fidelity.batch_size)
    executor = Executor(cfg.executor)
    generator = torch.Generator().manual_seed(0)
    tokens = (cfg.model.tiny.image_size // 8) ** 2
    inputs = [
        FidelityInput(STEPS, torch.randint(0, cfg.model.tiny.num_codes, (IMAGES, tokens), generator=generator), scene(i))
        for i in range(ANSWERS)
    ]
    slices = [("natural", "structured", "diagrammatic", "vision_operational")[i % 4] for i in range(ANSWERS)]
    score_fidelity(inputs[:2], executor, codec, cfg.fidelity.psnr_cap_db, cfg.fidelity.headline)  # warm-up
    scorer_s, summary_s, cpu_s = [], [], []
    for _ in range(REPEATS):
        started, cpu = time.perf_counter(), time.process_time()
        scores = score_fidelity(inputs, executor, codec, cfg.fidelity.psnr_cap_db, cfg.fidelity.headline)
        scorer_s.append(time.perf_counter() - started)
        cpu_s.append(time.process_time() - cpu)
        started = time.perf_counter()
        fidelity_metrics(slices, scores, cfg)
        summary_s.append(time.perf_counter() - started)
    images = ANSWERS * IMAGES
    assert scores.counts()["scored"] == images
    scorer, summary = min(scorer_s), min(summary_s)
    print(
        f"bench_fidelity: {images} images, scorer {scorer:.2f} s wall ({1000 * scorer / images:.1f} ms/image, "
        f"{min(cpu_s):.2f} CPU-s), "
        f"summary with {cfg.intervals.resamples} bootstrap resamples {summary:.2f} s, "
        f"threads {torch.get_num_threads()}; goal < 5 CPU-s per 100 images: {'met' if min(cpu_s) < 5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
