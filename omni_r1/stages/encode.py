"""Stage ``encode``: dataset images -> codebook codes, cached beside the records.

What it does: for every dataset ``prepare`` wrote (``<prepared_dir>/<name>/manifest.json``), runs
each input and step image through the VQ encoder of the configured model (tiny or Anole)
and writes ``<encoded_dir>/<name>/codes.parquet`` (record id, image key, H*W codes) and
``cache_key.json``. The cache key is the tokenizer hash plus the dataset manifest hash: a
new tokenizer or new data re-encodes, a re-run with both unchanged is a no-op.

Paper: images enter the model as VQ codebook tokens (Chameleon/Anole, 32x32 = 1024 per
512-px image); these codes are the targets c_t of the PeSFT perception loss (Eq. of
L_pe) and the image segments of the packed sequences. Encoding is done once here because
it is the expensive part at 7B scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.console import StageProgress
from omni_r1.data import PREPARED_DATASETS
from omni_r1.data.codes import cache_key, encode_dataset
from omni_r1.data.storage import MANIFEST
from omni_r1.model.images import encode_images
from omni_r1.model.loading import load_omni
from omni_r1.model.tiny import tokenizer_hash
from omni_r1.tracking import log_dataset_manifest, stage_run


def prepared_datasets(cfg: Config) -> list[str]:
    """The datasets ``prepare`` wrote (role names) that have a manifest.

    Datasets written by later stages (the Zero bootstrap) encode their own images.
    """
    root = Path(cfg.data.prepared_dir)
    return [name for name in PREPARED_DATASETS if (root / name / MANIFEST).exists()]


def tokenizer_dir(cfg: Config) -> str:
    return cfg.model.local_dir if cfg.model.source == "tiny" else cfg.model.pretrained_id


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    """Encode every prepared dataset (or hit the cache); return ``name -> summary``."""
    names = prepared_datasets(cfg)
    if not names:
        raise FileNotFoundError(f"no prepared datasets under {cfg.data.prepared_dir}; run `omni-r1 prepare`")
    with stage_run(cfg, "encode"):
        omni = load_omni(cfg)
        token_hash = tokenizer_hash(tokenizer_dir(cfg))

        def encoder(images: Any) -> Any:
            return encode_images(omni, images)  # [N, H*W]

        summaries = {}
        for name in names:
            dataset_dir = Path(cfg.data.prepared_dir) / name
            log_dataset_manifest(dataset_dir / MANIFEST, name, context="encode")
            key = cache_key(dataset_dir, token_hash)
            with StageProgress(f"encode {name}", None, unit="images", every_s=cfg.console.log_every_s) as progress:
                summaries[name] = encode_dataset(
                    dataset_dir, Path(cfg.data.encoded_dir) / name, encoder, key,
                    on_images=lambda count, bar=progress: bar.update(advance=count),
                )  # fmt: skip
        mlflow.log_dict(summaries, "encode/summary.json")
        mlflow.log_metrics({f"encode.{n}.images": float(s.get("images", 0)) for n, s in summaries.items()})
    return summaries
