"""Dry-run planner: will the configured run fit, and how long will it take, before launching it.

``omni-r1 plan --overlay params/paper.yaml`` builds the configured model on PyTorch's ``meta``
device (shapes only, no memory, no download: ``model.pretrained_config`` holds Anole-7B's
``ChameleonConfig``), counts its parameters, and for each PeSFT strategy and GPU count estimates
the memory per rank; it then counts tokens per optimiser step and turns token counts into
expected stage times from ``plan.*`` (GPU peak bf16 FLOP/s and the utilisation assumed).

Memory model (mixed-precision AdamW, ZeRO paper's accounting): bf16 weights 2 B/param, bf16
gradients 2 B/param, fp32 master weights + AdamW moments 12 B/param, i.e. 16 B/param.

- ``ddp``: all of it on every rank;
- ``deepspeed_zero2``: weights replicated, gradients and optimiser states split over N ranks;
- ``fsdp`` (full_shard): everything split over N ranks, plus the gathered bf16 weights of the
  largest unit (a decoder layer) twice (the one in use and the one prefetched).

Activations per sequence of L tokens (hidden h, layers n, vocabulary V): 34·L·h bytes per
layer (Korthikanti et al., flash attention, no L² term) without gradient checkpointing; with it,
2·L·h per layer plus one layer's 34·L·h; plus fp32 logits 4·L·V twice (values and gradient).
Time: training FLOPs ≈ 6·P per token (forward + backward); PeRPO adds 4·P per token for the
reference and old-policy forwards and generates at ``plan.decode_mfu``. These are estimates
written out with their assumptions, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omni_r1.config import Config

STRATEGIES = ("ddp", "fsdp", "deepspeed_zero2")
BYTES_WEIGHTS, BYTES_GRADS, BYTES_OPTIMIZER = 2, 2, 12
GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    parameters: int  # everything, VQ model included
    trainable: int  # the decoder and LM head (+ W): the VQ model is frozen
    largest_unit: int  # parameters of one decoder layer (an FSDP unit)
    hidden_size: int
    layers: int
    vocab_size: int


def chameleon_config(cfg: Config) -> Any:
    """The configured model's ``ChameleonConfig`` without loading weights.

    ``model.pretrained_config`` for the pretrained model; the tiny model's shape otherwise.
    """
    from transformers import ChameleonConfig

    if cfg.model.source == "pretrained":
        if not cfg.model.pretrained_config:
            raise ValueError("model.pretrained_config is empty: the planner needs the model's ChameleonConfig")
        return ChameleonConfig(**{"vocabulary_map": {}, **cfg.model.pretrained_config})
    from omni_r1.model.tiny import special_tokens, tiny_vq_config

    tiny = cfg.model.tiny  # vocabulary: the BPE text tokens plus every special and image token
    return ChameleonConfig(
        vocab_size=tiny.text_vocab_size + len(special_tokens(tiny.num_codes)), hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size, num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads, num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=tiny.max_position_embeddings, vq_config=tiny_vq_config(tiny), vocabulary_map={},
    )  # fmt: skip


def model_shape(config: Any) -> ModelShape:
    """Instantiate on the meta device and count: [P] total, trainable, one decoder layer."""
    from transformers import ChameleonForConditionalGeneration

    with torch.device("meta"):
        model = ChameleonForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for p in model.model.vqmodel.parameters())
    projection = config.hidden_size * config.vq_config.embed_dim + config.vq_config.embed_dim  # W
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    return ModelShape(total, total - frozen + projection, layer, config.hidden_size, config.num_hidden_layers,
                      config.vocab_size)  # fmt: skip


def state_bytes(shape: ModelShape, strategy: str, gpus: int) -> float:
    """Weights + gradients + optimiser states per rank (module docstring)."""
    frozen = (shape.parameters - shape.trainable) * BYTES_WEIGHTS
    trained = shape.trainable
    if strategy == "ddp":
        return frozen + trained * (BYTES_WEIGHTS + BYTES_GRADS + BYTES_OPTIMIZER)
    if strategy == "deepspeed_zero2":
        return frozen + trained * BYTES_WEIGHTS + trained * (BYTES_GRADS + BYTES_OPTIMIZER) / gpus
    if strategy == "fsdp":
        per_rank = (frozen + trained * (BYTES_WEIGHTS + BYTES_GRADS + BYTES_OPTIMIZER)) / gpus
        return per_rank + 2 * shape.largest_unit * BYTES_WEIGHTS
    raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")


def activation_bytes(shape: ModelShape, tokens: int, checkpointing: bool) -> float:
    """Activations of ``tokens`` tokens in one forward/backward (module docstring)."""
    per_layer = 34 * tokens * shape.hidden_size
    kept = 2 * tokens * shape.hidden_size * shape.layers + per_layer if checkpointing else per_layer * shape.layers
    return kept + 2 * 4 * tokens * shape.vocab_size


def memory_table(cfg: Config, shape: ModelShape) -> list[dict[str, Any]]:
    """Per-rank GiB for every strategy x ``plan.gpu_counts`` under the PeSFT settings."""
    tokens = cfg.pesft.per_device_batch_size * cfg.packing.max_length
    activations = activation_bytes(shape, tokens, cfg.pesft.gradient_checkpointing)
    rows = []
    for strategy in STRATEGIES:
        for gpus in cfg.plan.gpu_counts:
            total = (state_bytes(shape, strategy, gpus) + activations) / GIB
            rows.append({"strategy": strategy, "gpus": gpus, "state_gib": state_bytes(shape, strategy, gpus) / GIB,
                         "activations_gib": activations / GIB, "total_gib": total,
                         "fits": total <= cfg.plan.gpu_memory_gib})  # fmt: skip
    return rows


def tokens_per_step(cfg: Config, gpus: int) -> dict[str, int]:
    """Upper bounds: PeSFT sequences x ``packing.max_length``; PeRPO prompts x responses x budget."""
    pesft = cfg.pesft.per_device_batch_size * cfg.pesft.gradient_accumulation_steps * gpus * cfg.packing.max_length
    trained = cfg.perpo.train_batch_size * cfg.perpo.rollout_n * cfg.perpo.max_new_tokens
    generated = cfg.perpo.gen_batch_size * cfg.perpo.rollout_n * cfg.perpo.max_new_tokens
    return {"pesft": pesft, "perpo_trained": trained, "perpo_generated": generated}


def stage_hours(cfg: Config, shape: ModelShape, gpus: int) -> dict[str, float]:
    """Expected hours of PeSFT (``plan.pesft_sequences`` sequences, one epoch) and PeRPO
    (``perpo.max_steps`` steps) on ``gpus`` GPUs, from token counts and ``plan.*`` throughput."""
    flops = cfg.plan.gpu_bf16_tflops * 1e12 * gpus
    tokens = tokens_per_step(cfg, gpus)
    pesft_tokens = cfg.plan.pesft_sequences * cfg.packing.max_length
    pesft = 6 * shape.parameters * pesft_tokens / (flops * cfg.plan.mfu)
    train = 10 * shape.parameters * tokens["perpo_trained"] / (flops * cfg.plan.mfu)
    generate = 2 * shape.parameters * tokens["perpo_generated"] / (flops * cfg.plan.decode_mfu)
    return {"pesft": pesft / 3600, "perpo": cfg.perpo.max_steps * (train + generate) / 3600,
            "perpo_step_minutes": (train + generate) / 60}  # fmt: skip


def plan_text(cfg: Config) -> str:
    """The whole plan as text (what ``omni-r1 plan`` prints)."""
    config = chameleon_config(cfg)
    shape = model_shape(config)
    lines = [
        f"model: {cfg.model.pretrained_id if cfg.model.source == 'pretrained' else 'tiny'} "
        f"(hidden {shape.hidden_size}, layers {shape.layers}, vocab {shape.vocab_size})",
        f"parameters: {shape.parameters:,} ({shape.parameters / 1e9:.2f} B); trained {shape.trainable:,} "
        f"(VQ model frozen, + W); largest FSDP unit {shape.largest_unit:,}",
        f"PeSFT per rank: batch {cfg.pesft.per_device_batch_size} x {cfg.packing.max_length} tokens, "
        f"gradient checkpointing {cfg.pesft.gradient_checkpointing}, GPU memory {cfg.plan.gpu_memory_gib} GiB",
        "",
        "| strategy | GPUs | weights+grads+optimiser GiB | activations GiB | total GiB/rank | fits |",
        "|---|---|---|---|---|---|",
    ]
    for row in memory_table(cfg, shape):
        lines.append(f"| {row['strategy']} | {row['gpus']} | {row['state_gib']:.1f} | {row['activations_gib']:.1f} | "
                     f"{row['total_gib']:.1f} | {'yes' if row['fits'] else 'no'} |")  # fmt: skip
    lines += ["", "| GPUs | PeSFT tokens/step | PeRPO tokens trained/step | PeRPO tokens generated/step "
              "| PeSFT hours | PeRPO hours | PeRPO min/step |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for gpus in cfg.plan.gpu_counts:
        tokens, hours = tokens_per_step(cfg, gpus), stage_hours(cfg, shape, gpus)
        lines.append(f"| {gpus} | {tokens['pesft']:,} | {tokens['perpo_trained']:,} | {tokens['perpo_generated']:,} | "
                     f"{hours['pesft']:.1f} | {hours['perpo']:.1f} | {hours['perpo_step_minutes']:.1f} |")  # fmt: skip
    lines += [
        "",
        f"assumptions: {cfg.plan.gpu_bf16_tflops} bf16 TFLOP/s per GPU at {cfg.plan.mfu:.0%} utilisation for "
        f"training and {cfg.plan.decode_mfu:.0%} for generation; PeSFT = {cfg.plan.pesft_sequences:,} sequences "
        f"of at most {cfg.packing.max_length} tokens (one epoch); token counts are upper bounds (full budgets).",
    ]
    return "\n".join(lines)
