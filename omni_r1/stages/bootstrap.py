"""Stage ``bootstrap``: the Omni-R1-Zero training set, drawn by the base model itself.

What it does (paper Appendix C; :mod:`omni_r1.training.bootstrap`): takes the first
``bootstrap.max_records`` records of a text-only chain-of-thought set
(``bootstrap.source``: ``text_cot``: synthetic by default, M3CoT with real
sources), and for every reasoning step has the base model (``load_base``: the ``base``
stage's tiny base that can draw, or Anole) generate exactly
one image conditioned on the question, input images and the steps so far (forced BOI
after the step text, exactly H·W image tokens, EOI). Each image is decoded to PNG by the
VQ decoder and the record is written in the usual interleaved template (step =
rationale, no action, image) to ``data/prepared/zero_bootstrap/`` (shards + manifest) with
its summary in ``metrics/data_zero_bootstrap.json``.

Codes: the new set is then run through the encode path (VQ encoder on the decoded PNGs,
``data/encoded/zero_bootstrap/``, same cache key as ``omni-r1 encode``), as the paper's
pipeline would tokenise stored images; the share of generated codes that survive the
decode → encode round trip is logged as ``bootstrap.code_roundtrip_agreement``.

Where it differs: the paper bootstraps 791 M3CoT samples with Anole-7B; the tiny default
bootstraps a small capped slice of the synthetic text-CoT set with the tiny base, which
was pre-trained only on template describe/draw/apply-action pairs, so its step images are
as good as that base draws (``metrics/base.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import torch

from omni_r1.config import Config
from omni_r1.console import StageProgress
from omni_r1.data.codes import cache_key, encode_dataset, read_codes
from omni_r1.data.records import Record, from_png
from omni_r1.data.storage import MANIFEST, manifest_summary, read_records, write_records
from omni_r1.model.images import decode_images, encode_images
from omni_r1.model.loading import load_base
from omni_r1.model.tiny import tokenizer_hash
from omni_r1.stages.encode import tokenizer_dir
from omni_r1.tracking import log_dataset_manifest, stage_run
from omni_r1.training.bootstrap import BootstrapResult, bootstrap_records, cot_steps


def source_records(cfg: Config) -> list[Record]:
    """The first ``bootstrap.max_records`` records of the text-only CoT set."""
    source_dir = Path(cfg.data.prepared_dir) / cfg.bootstrap.source
    if not (source_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{source_dir}: no prepared text-CoT dataset; run `omni-r1 prepare`")
    records = []
    for record in read_records(source_dir):
        if len(records) >= cfg.bootstrap.max_records:
            break
        records.append(record)
    return records


def input_image_codes(cfg: Config, omni: Any, records: list[Record]) -> list[list[torch.Tensor]]:
    """Codes of each record's input images: the encode cache when present, else encoded here."""
    encoded_dir = Path(cfg.data.encoded_dir) / cfg.bootstrap.source
    cached = read_codes(encoded_dir) if (encoded_dir / "codes.parquet").exists() else {}
    codes = []
    for record in records:
        keys = [(record.id, f"input_{index}") for index in range(len(record.input_images))]
        if all(key in cached for key in keys):
            codes.append([cached[key] for key in keys])
        else:
            images = [from_png(png) for png in record.input_images]
            codes.append(list(encode_images(omni, images)) if images else [])
    return codes


def sampling_settings(cfg: Config) -> dict[str, Any]:
    if not cfg.bootstrap.do_sample:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": cfg.generation.temperature, "top_p": cfg.generation.top_p}


def roundtrip_agreement(result: BootstrapResult, encoded: dict[tuple[str, str], torch.Tensor]) -> float:
    """Share of generated step codes equal to the re-encoded codes of their decoded PNGs."""
    same = total = 0
    for key, generated in result.codes.items():
        if key[1].startswith("step_") and key in encoded:
            same += int((encoded[key] == generated).sum())
            total += generated.numel()
    return same / total if total else float("nan")


def run(cfg: Config) -> dict[str, Any]:
    """Bootstrap the Zero set, encode it; return its manifest summary plus generation stats."""
    name = cfg.bootstrap.out_name
    out_dir = Path(cfg.data.prepared_dir) / name
    encoded_dir = Path(cfg.data.encoded_dir) / name
    with stage_run(cfg, "bootstrap"):
        torch.manual_seed(cfg.run.seed)
        omni = load_base(cfg)
        omni.model.eval()
        records = source_records(cfg)
        source_manifest = Path(cfg.data.prepared_dir) / cfg.bootstrap.source / MANIFEST
        log_dataset_manifest(source_manifest, cfg.bootstrap.source, context="bootstrap_source")
        steps = sum(len(cot_steps(record)) for record in records)
        with StageProgress("bootstrap images", steps, unit="images", every_s=cfg.console.log_every_s) as progress:
            result = bootstrap_records(
                records, input_image_codes(cfg, omni, records), omni.model, omni.layout, omni.tokenizer,
                lambda codes: decode_images(omni, codes),
                max_length=cfg.packing.max_length, batch_size=cfg.bootstrap.batch_size,
                sampling=sampling_settings(cfg), source_name=cfg.bootstrap.source,
                on_images=lambda count: progress.update(advance=count),
            )  # fmt: skip
        images = sum(len(record.steps) for record in result.records)
        manifest = write_records(
            result.records, out_dir, name=name, shard_size=cfg.data.shard_size, skipped=result.skipped,
            extra={"kind": "interleaved", "bootstrap_source": cfg.bootstrap.source, "generated_images": images},
        )  # fmt: skip
        summary = manifest_summary(manifest)
        metrics_path = Path(cfg.paths.metrics_dir) / f"data_{name}.json"
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        log_dataset_manifest(metrics_path, name, context="bootstrap")

        key = cache_key(out_dir, tokenizer_hash(tokenizer_dir(cfg)))
        encoded = encode_dataset(out_dir, encoded_dir, lambda ims: encode_images(omni, ims), key)
        agreement = roundtrip_agreement(result, read_codes(encoded_dir))
        mlflow.log_metrics({
            "bootstrap.records": float(manifest["total"]),
            "bootstrap.generated_images": float(images),
            "bootstrap.skipped": float(manifest["skipped_total"]),
            "bootstrap.code_roundtrip_agreement": agreement,
        })  # fmt: skip
    return {**summary, "encoded_images": encoded.get("images"), "code_roundtrip_agreement": agreement}
