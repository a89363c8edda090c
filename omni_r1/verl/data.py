"""The prepared PeRPO prompts as verl's RLHF parquet (one row per record).

Columns (verl's ``RLHFDataset`` schema, REFERENCE §6):

- ``data_source``: ``omni_r1/<record.source>``;
- ``prompt``: one user message whose content is the rendered question with ``<image>`` per
  input image (:func:`omni_r1.trajectory.render_prompt`);
- ``images``: the input images as ``{"bytes": PNG}`` (what the gallery shows);
- ``ability``: the record's Uni-Task;
- ``reward_model``: ``{"style": "rule", "ground_truth": final answer}``;
- ``extra_info``: ``index``, ``record_id``, ``choices``, ``answer_type`` (the grader's answer
  type, "" for none) and ``input_codes`` (the cached codebook indices of each input image).

Chameleon reads images as codebook tokens, not through an image processor, so the rows
carry the codes of the ``encode`` stage; :class:`omni_r1.verl.dataset.OmniRLHFDataset` packs
text and codes into exactly the local engine's prompt ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from omni_r1.data.records import Record, record_to_trajectory
from omni_r1.training.rollout import GRADER_ANSWER_TYPES
from omni_r1.trajectory import render_prompt

DATA_SOURCE_PREFIX = "omni_r1/"


def rlhf_row(record: Record, index: int, input_codes: Sequence[torch.Tensor]) -> dict[str, Any]:
    """One record as a verl RLHF row (columns in the module docstring)."""
    return {
        "data_source": f"{DATA_SOURCE_PREFIX}{record.source}",
        "prompt": [{"role": "user", "content": render_prompt(record_to_trajectory(record))}],
        "images": [{"bytes": png} for png in record.input_images],
        "ability": record.uni_task,
        "reward_model": {"style": "rule", "ground_truth": record.final_answer},
        "extra_info": {
            "index": index,
            "record_id": record.id,
            "choices": list(record.choices),
            "answer_type": GRADER_ANSWER_TYPES.get(record.answer_type) or "",
            "input_codes": [codes.tolist() for codes in input_codes],
        },
    }


def rlhf_rows(
    records: Sequence[Record], codes: dict[tuple[str, str], torch.Tensor], source: str
) -> list[dict[str, Any]]:
    """Every record as a row, its input images' cached codes included.

    Raises:
        KeyError: an input image has no cached code (names dataset, record and image key).
    """
    rows = []
    for index, record in enumerate(records):
        keys = [f"input_{i}" for i in range(len(record.input_images))]
        missing = [key for key in keys if (record.id, key) not in codes]
        if missing:
            raise KeyError(
                f"{source}: record {record.id!r}, image {missing[0]!r}: no cached codes (run `omni-r1 encode`)"
            )
        rows.append(rlhf_row(record, index, [codes[(record.id, key)] for key in keys]))
    return rows


def write_rlhf_parquet(rows: Sequence[dict[str, Any]], path: Path | str) -> Path:
    """Write rows as one parquet file (nested columns as parquet structs and lists)."""
    if not rows:
        raise ValueError(f"{path}: no PeRPO prompts to export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path
