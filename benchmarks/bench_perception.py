"""Perception reward throughput: vectorised batch path vs a memcpy and vs the per-segment loop.

Batch: 64 responses × 3 images of 32×32 = 1024 tokens (Anole's grid), codebook 8192×256
float32, text tokens around the images. The memcpy baseline is ``clone()`` of the gathered
embedding tensor Z [N, H·W, D] — the bytes the embedding path must materialise once.
"vectorised" is the batch path with the precomputed [K, K] squared-distance table (what a
trainer uses: the codebook is frozen, the table is built once); the embedding-lookup path
(no table) is reported beside it.

Goals: vectorised/memcpy ≤ 2, python-loop/vectorised ≥ 10.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from omni_r1.model.layout import TokenLayout
from omni_r1.rewards.perception import (
    codebook_squared_distances,
    find_image_segments,
    perception_score,
)

RESPONSES, IMAGES, TEXT_TOKENS = 64, 3, 40


def load_reference() -> Any:
    """``tests/perception_reference.py``, the plain-loop perception reward the tests also use."""
    path = Path(__file__).resolve().parents[1] / "tests" / "perception_reference.py"
    spec = importlib.util.spec_from_file_location("perception_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def anole_layout() -> TokenLayout:
    return TokenLayout(
        bos_id=0, pad_id=1, eos_id=2, boi_id=8197, eoi_id=8196, image_token_start=4,
        num_codes=8192, grid_h=32, grid_w=32, image_size=512, reasoning_open_id=12860,
        reasoning_close_id=12861, answer_open_id=12870, answer_close_id=12871, vocab_size=65536,
    )  # fmt: skip


def make_batch(layout: TokenLayout, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    rows = []
    for _ in range(RESPONSES):
        tokens: list[torch.Tensor] = []
        for _ in range(IMAGES):
            tokens.append(torch.randint(8200, 60000, (TEXT_TOKENS,), generator=generator))
            codes = torch.randint(0, layout.num_codes, (layout.tokens_per_image,), generator=generator)
            tokens.append(torch.cat([torch.tensor([layout.boi_id]), layout.codes_to_ids(codes), torch.tensor([layout.eoi_id])]))
        rows.append(torch.cat(tokens))
    ids = torch.stack(rows)  # [B, L]
    return ids, torch.ones_like(ids)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    layout = anole_layout()
    codebook = torch.randn(layout.num_codes, 256, generator=generator)
    ids, mask = make_batch(layout, generator)
    kwargs = dict(tau=3.0, score_map="inv", aggregation="min")
    gathered = codebook[find_image_segments(ids, mask, layout).codes]  # [N, S, D], the memcpy bytes
    table = codebook_squared_distances(codebook)
    reference = load_reference().perception_score_reference

    memcpy = best_time(gathered.clone, repeats=5)
    embedding = best_time(lambda: perception_score(ids, mask, codebook, layout, **kwargs), repeats=3)
    from_table = best_time(
        lambda: perception_score(ids, mask, codebook, layout, squared_distances=table, **kwargs), repeats=5
    )
    loop = best_time(lambda: reference(ids, mask, codebook, layout, **kwargs), repeats=1)

    fast = perception_score(ids, mask, codebook, layout, squared_distances=table, **kwargs).score
    slow = reference(ids, mask, codebook, layout, **kwargs).score
    torch.testing.assert_close(fast, slow)
    print(
        f"perception: vectorised/memcpy = {from_table / memcpy:.2f}x (goal <= 2), "
        f"python-loop/vectorised = {loop / from_table:.1f}x (goal >= 10); "
        f"embedding-path/memcpy = {embedding / memcpy:.2f}x "
        f"[{RESPONSES}x{IMAGES} images, {gathered.numel() * 4 / 2**20:.0f} MiB gathered, "
        f"memcpy {memcpy * 1e3:.1f} ms, table path {from_table * 1e3:.1f} ms, "
        f"embedding path {embedding * 1e3:.1f} ms, loop {loop * 1e3:.0f} ms]"
    )


if __name__ == "__main__":
    main()
