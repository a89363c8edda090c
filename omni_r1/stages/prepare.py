"""Stage ``prepare``: build the versioned datasets the rest of the pipeline reads.

What it does (paper, Appendix C and Table 1):

- Embedded default (``data.sources: []``): synthetic Uni-Tasks (natural scene search,
  structured chart reading, diagrammatic geometry, vision-operational grid paths) with
  executor-rendered interleaved traces and text-only CoT variants:
  ``sft_train`` (PeSFT), ``text_cot`` (the same tasks without step
  images, for the Omni-R1-Zero bootstrap), ``perpo_train`` (RL prompts), ``omnibench``
  (four held-out slices).
- Real sources (``data.sources`` names them): ``omnibench`` from the Table 1 slices of the
  listed sources; ``sft_train`` (Zebra-CoT, PeSFT of Omni-R1); ``text_cot`` (M3CoT text-only CoT,
  Omni-R1-Zero); ``perpo_train`` = ~10% Zebra-CoT + 1K ArxivQA + 250 Geometry3K.

Every training set is disjoint from Omni-Bench by record id and image hash. Each dataset
goes to ``<prepared_dir>/<name>/`` (parquet shards + manifest), its manifest summary to
``<metrics_dir>/data_<name>.json``, and to MLflow (``mlflow.data`` inputs + artifacts).

Where it differs from the paper: the paper's Omni-R1-Zero set is 791 samples bootstrapped
from an M3CoT subset; here the text-only set is written whole and the bootstrap stage picks.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.data import OMNIBENCH, PERPO_TRAIN, SFT_TRAIN, TEXT_COT
from omni_r1.data.mixes import perpo_mix
from omni_r1.data.omnibench import Exclusion, assemble_omnibench, drop_overlaps, synthetic_omnibench
from omni_r1.data.records import Record
from omni_r1.data.revisions import check_local_pin
from omni_r1.data.sources import get_source, load_source
from omni_r1.data.storage import manifest_summary, write_records
from omni_r1.data.synthetic import GENERATORS, generate
from omni_r1.tracking import stage_run


@dataclass
class DatasetPlan:
    """One dataset to write: its records (a stream) and the skip counter they fill."""

    records: Iterable[Record]
    skipped: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    """Build and write every dataset; return ``name -> manifest summary``."""
    for name in cfg.data.sources:
        get_source(name)  # an unknown name fails before any download or run
    with stage_run(cfg, "prepare"):
        plans = real_plans(cfg) if cfg.data.sources else synthetic_plans(cfg)
        summaries = {name: write_dataset(cfg, name, plan) for name, plan in plans}
        mlflow.log_metrics({f"data.{name}.total": s["total"] for name, s in summaries.items()})
    return summaries


# ----------------------------------------------------------------------------- synthetic
def synthetic_plans(cfg: Config) -> Iterator[tuple[str, DatasetPlan]]:
    """Omni-Bench is drawn after the training sets, away from all their ids and images."""
    knobs = cfg.data.synthetic
    train = list(generate("train", knobs.train_per_task, cfg))
    perpo = list(generate("perpo", knobs.perpo_per_task, cfg))
    exclusion = Exclusion.of(train + perpo, "all")
    candidates = {task: generate("omnibench", 10**6, cfg, uni_tasks=(task,)) for task in GENERATORS}
    bench, redrawn = synthetic_omnibench(candidates, knobs.omnibench_per_slice, exclusion)
    text_cot = (r.model_copy(update={"steps": []}) for r in train)
    yield SFT_TRAIN, DatasetPlan(train, extra={"kind": "interleaved"})
    yield TEXT_COT, DatasetPlan(text_cot, extra={"kind": "text_cot"})
    yield PERPO_TRAIN, DatasetPlan(perpo, extra={"kind": "rl_prompts"})
    yield OMNIBENCH, DatasetPlan(bench, extra={"kind": "benchmark", "redrawn": dict(redrawn)})


# ----------------------------------------------------------------------------- real sources
def real_plans(cfg: Config) -> Iterator[tuple[str, DatasetPlan]]:
    data, seed = cfg.data, cfg.run.seed
    skipped_bench: Counter[str] = Counter()

    def source(name: str, role: str, skipped: Counter[str]) -> Iterator[Record]:
        configs = tuple(data.hub_configs[name]) if name in data.hub_configs else None
        local_path = data.local_paths.get(name)
        if local_path is not None:
            check_local_pin(name, local_path, data.revisions.get(name))
        return load_source(name, role, local_path=local_path, configs=configs,
                           on_bad_record=data.on_bad_record, skipped=skipped,
                           revision=None if local_path is not None else data.revisions.get(name))

    slice_sources = {
        slice_name: {name: source(name, "eval", skipped_bench) for name in counts
                     if name in data.sources and "eval" in get_source(name).splits}
        for slice_name, counts in data.omnibench.items()
    }
    bench = assemble_omnibench(slice_sources, data.omnibench, seed)
    exclusion = Exclusion.of(bench, "input")
    yield OMNIBENCH, DatasetPlan(bench, skipped_bench, {"kind": "benchmark", "slices": data.omnibench})

    def training(name: str, role: str = "train") -> Callable[[Counter[str]], Iterator[Record]]:
        return lambda skipped: drop_overlaps(source(name, role, skipped), exclusion, skipped)

    if "zebra_cot" in data.sources:
        plan = DatasetPlan([])
        plan.records = training("zebra_cot")(plan.skipped)
        yield SFT_TRAIN, plan
    if "m3cot" in data.sources:
        plan = DatasetPlan([])
        plan.records = training("m3cot")(plan.skipped)
        yield TEXT_COT, plan
    mix_sources = [n for n in ("zebra_cot", "arxivqa", "geometry3k") if n in data.sources]
    if mix_sources:
        plan = DatasetPlan([], extra={"kind": "rl_prompts", "mix": data.perpo_mix.model_dump()})
        streams = {n: training(n)(plan.skipped) for n in mix_sources}
        plan.records = perpo_mix(data.perpo_mix, seed, **streams)
        yield PERPO_TRAIN, plan


# ----------------------------------------------------------------------------- save
def write_dataset(cfg: Config, name: str, plan: DatasetPlan) -> dict[str, Any]:
    """Write shards + manifest, the metrics summary, and the MLflow records of one dataset."""
    out_dir = Path(cfg.data.prepared_dir) / name
    manifest = write_records(plan.records, out_dir, name=name, shard_size=cfg.data.shard_size,
                             skipped=plan.skipped, extra=plan.extra)
    summary = manifest_summary(manifest)
    metrics_path = Path(cfg.paths.metrics_dir) / f"data_{name}.json"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log_dataset(name, out_dir, summary)
    return summary


def log_dataset(name: str, out_dir: Path, summary: dict[str, Any]) -> None:
    """The manifest as an MLflow artifact and the dataset as a run input (``mlflow.data``)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow.log_dict(summary, f"data/{name}/manifest.json")
    digest = "".join(shard["sha256"][:8] for shard in summary["shards"])[:32]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(out_dir.resolve()))
    mlflow.log_input(MetaDataset(source=source, name=name, digest=digest), context="prepare")
