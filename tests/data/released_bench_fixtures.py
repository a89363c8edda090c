"""Small parquet files in the released Omni-Bench schema (``question``, ``image``, ``answer``).

``image`` takes every form the released file and the official ``vllm_eval.py`` use: a raw base64
PNG, a ``data:image/png;base64,`` URL, a list of them, and ``<TLTS>`` for a removed image.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png_base64(color: tuple[int, int, int], size: int = 40) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def released_rows() -> list[dict]:
    red, blue = png_base64((220, 20, 20)), png_base64((20, 20, 220))
    return [
        {"question": "<image>What colour is the square?", "image": red, "answer": "red", "category": "vstar"},
        {"question": "How many bars are there?", "image": "data:image/png;base64," + blue, "answer": "4",
         "category": "ChartQA"},
        {"question": "<image> left <image> right: which is blue? (A) left (B) right", "image": [red, blue],
         "answer": "B", "category": "geometry3k"},
        {"question": "Count the squares.", "image": [red, "<TLTS>"], "answer": "1", "category": "ViC-Bench maze"},
    ]


def write_bench(path: Path, rows: list[dict], *, list_images: bool = True) -> Path:
    """Write ``rows`` as one parquet; ``image`` is a list<string> column when any row has a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if list_images:
        rows = [{**row, "image": row["image"] if isinstance(row["image"], list) else [row["image"]]}
                if "image" in row else row for row in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
