"""The data layer: canonical records, source adapters, synthetic Uni-Tasks, Omni-Bench, storage.

- :mod:`omni_r1.data.records`: ``Record`` / ``RecordStep``, Uni-Tasks and Uni-Skills,
  ``record_to_trajectory``, ``DataError``.
- :mod:`omni_r1.data.storage`: parquet shards + manifest (``write_records``, ``read_records``).
- :mod:`omni_r1.data.sources`: one adapter per upstream dataset, ``load_source``.
- :mod:`omni_r1.data.synthetic`: the embedded default tasks.
- :mod:`omni_r1.data.omnibench` / :mod:`omni_r1.data.mixes`: Omni-Bench slices, PeRPO mix.
- :mod:`omni_r1.data.codes`: cached VQ codes (``read_codes``).
"""

from omni_r1.data.records import (
    UNI_SKILLS,
    UNI_TASKS,
    DataError,
    Record,
    RecordStep,
    record_to_trajectory,
    text_cot_trajectory,
)
from omni_r1.data.storage import read_manifest, read_records, write_records

# Role names of the prepared datasets: the same whether they come from the synthetic
# Uni-Tasks or from the real sources, so one DVC graph serves both.
SFT_TRAIN = "sft_train"  # interleaved traces for PeSFT (synthetic | Zebra-CoT)
TEXT_COT = "text_cot"  # text-only chains of thought for the Omni-R1-Zero bootstrap (synthetic | M3CoT)
PERPO_TRAIN = "perpo_train"  # PeRPO prompts (synthetic | Zebra-CoT 10% + ArxivQA + Geometry3K)
OMNIBENCH = "omnibench"  # the four Omni-Bench slices
PREPARED_DATASETS = (SFT_TRAIN, TEXT_COT, PERPO_TRAIN, OMNIBENCH)


__all__ = [
    "OMNIBENCH",
    "PERPO_TRAIN",
    "PREPARED_DATASETS",
    "SFT_TRAIN",
    "TEXT_COT",
    "UNI_SKILLS",
    "UNI_TASKS",
    "DataError",
    "Record",
    "RecordStep",
    "read_manifest",
    "read_records",
    "record_to_trajectory",
    "text_cot_trajectory",
    "write_records",
]
