"""General benchmarks of the paper's Table 3 (MME-P, MME-R, MM-Vet, V*, POPE, MMVP, BLINK).

The paper runs them through VLMEvalKit; VLMEvalKit is not on the package index, and lmms-eval
(which is) pins a torch that is not the project's, so neither is a dependency. The model is
exposed to both harnesses (:mod:`omni_r1.eval.vlmevalkit`, :mod:`omni_r1.eval.lmms_plugin`); the
``general_bench`` stage scores the benchmarks it finds as local copies in their upstream formats
with the harnesses' metrics, written here:

- POPE (``lmms-lab/POPE`` parquet: ``question_id``, ``question``, ``answer`` yes/no, ``image``,
  ``category``): F1 of the "yes" class (the Table 3 number), with accuracy, precision, recall and
  the share of "yes" answers;
- MME (``lmms-lab/MME`` parquet: ``question_id``, ``image``, ``question``, ``answer`` Yes/No,
  ``category``): per category accuracy + accuracy+ (both questions of an image right), times
  100; MME-P sums the ten perception categories, MME-R the four cognition ones.

An answer is the first yes/no word of the model's final answer (``Final Answer:`` span, else the
whole text); anything else counts as neither (wrong for MME, a "no" for POPE's confusion matrix,
as lmms-eval does).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from omni_r1.data.records import DataError, from_png, image_bytes

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")  # fmt: skip
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
COLUMNS = {"pope": ("question_id", "question", "answer", "image"), "mme": ("question_id", "question", "answer", "image", "category")}
YES_NO_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
TABLE3_COLUMNS = ("MME-P", "MME-R", "MM-Vet", "V*", "POPE", "MMVP", "BLINK")


@dataclass(frozen=True)
class GeneralItem:
    """One benchmark question: its images (PNG), text, gold answer and grouping fields."""

    benchmark: str
    question_id: str
    question: str
    answer: str
    images: tuple[bytes, ...]
    category: str
    image_key: str  # MME's acc+ groups the questions of one image


def read_benchmark(name: str, path: Path | str) -> Iterator[GeneralItem]:
    """Items of a local copy (a parquet file or a folder of them) in the upstream schema.

    Raises:
        DataError: a missing column or an unreadable image (names the file, row and field).
    """
    if name not in COLUMNS:
        raise KeyError(f"unknown general benchmark {name!r} (known: {', '.join(COLUMNS)})")
    root = Path(path)
    files = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
    if not files:
        raise DataError(str(root), "-", "path", "missing_file", "no parquet files")
    for file in files:
        table = pq.read_table(file)
        missing = [c for c in COLUMNS[name] if c not in table.column_names]
        if missing:
            raise DataError(str(file), "-", ",".join(missing), "missing_column", f"columns {missing} are missing")
        for index, row in enumerate(table.to_pylist()):
            record_id = f"{name}/row {index}: {row['question_id']}"
            png = image_bytes(row["image"], file=str(file), record_id=record_id, field="image")
            yield GeneralItem(
                benchmark=name, question_id=str(row["question_id"]), question=str(row["question"]).strip(),
                answer=str(row["answer"]).strip().lower(), images=(png,), category=str(row.get("category") or ""),
                image_key=str(row.get("image_source") or row["question_id"]),  # MME: both questions share the id
            )  # fmt: skip


def yes_no(text: str) -> str | None:
    """The first yes/no word of an answer, lower case; None when there is none."""
    match = YES_NO_RE.search(text or "")
    return match.group(1).lower() if match else None


def pope_metrics(golds: Sequence[str], predictions: Sequence[str | None]) -> dict[str, float]:
    """POPE: F1 of "yes" (positive class), accuracy, precision, recall, yes ratio, in [0, 1]."""
    pairs = list(zip(golds, [p or "no" for p in predictions], strict=True))
    tp = sum(g == "yes" and p == "yes" for g, p in pairs)
    fp = sum(g == "no" and p == "yes" for g, p in pairs)
    fn = sum(g == "yes" and p == "no" for g, p in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0
    yes_ratio = sum(p == "yes" for _, p in pairs) / len(pairs) if pairs else 0.0
    return {"f1": f1, "accuracy": accuracy, "precision": precision, "recall": recall, "yes_ratio": yes_ratio}


def mme_metrics(items: Sequence[GeneralItem], predictions: Sequence[str | None]) -> dict[str, float]:
    """MME: per category (acc + acc+) x 100; ``perception`` and ``cognition`` are their sums."""
    by_category: dict[str, list[bool]] = defaultdict(list)
    by_image: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for item, prediction in zip(items, predictions, strict=True):
        correct = prediction == item.answer
        by_category[item.category].append(correct)
        by_image[(item.category, item.image_key)].append(correct)
    scores = {}
    for category, results in by_category.items():
        accuracy = sum(results) / len(results)
        images = [all(v) for (c, _), v in by_image.items() if c == category]
        scores[category] = 100 * (accuracy + sum(images) / len(images))
    scores["perception"] = sum(v for k, v in scores.items() if k in MME_PERCEPTION)
    scores["cognition"] = sum(v for k, v in scores.items() if k in MME_COGNITION)
    return scores


def table3_row(results: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Table 3's columns from the benchmarks scored (POPE as F1 x 100); None when not run."""
    row: dict[str, float | None] = dict.fromkeys(TABLE3_COLUMNS)
    if "mme" in results:
        row["MME-P"], row["MME-R"] = results["mme"]["perception"], results["mme"]["cognition"]
    if "pope" in results:
        row["POPE"] = 100 * results["pope"]["f1"]
    return row


def table3_markdown(rows: dict[str, dict[str, float | None]]) -> str:
    """A Markdown table shaped like the paper's Table 3: one row per model."""
    lines = ["| Model | " + " | ".join(TABLE3_COLUMNS) + " |", "|" + "---|" * (len(TABLE3_COLUMNS) + 1)]
    for model, row in rows.items():
        cells = ["–" if row.get(c) is None else f"{row[c]:.1f}" for c in TABLE3_COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def message_of(item: GeneralItem) -> list[dict[str, Any]]:
    """The harness message of an item: its images, then its question."""
    return [*({"type": "image", "value": from_png(png)} for png in item.images), {"type": "text", "value": item.question}]
