"""Writers of fixture files in each upstream schema, plus the bad-input mutations.

Every source gets one good row builder and a table saying which field each bad-input kind
touches; ``write_source(name, folder, rows)`` writes the rows the way upstream ships them
(parquet with embedded images, or jsonl + image files).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image


def png(colour: tuple[int, int, int], size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    png(colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _seed_colour(index: int) -> tuple[int, int, int]:
    return (37 * index % 256, 91 * index % 256, 53 * index % 256)


# ---------------------------------------------------------------------------- good rows
def zebra_row(i: int) -> dict[str, Any]:
    return {
        "Question": f"Which path is shorter in maze {i}? <image_start>[problem_image_1]<image_end>",
        "Text Reasoning Trace": (
            "THOUGHT 0: Look at both paths. THOUGHT 1: Trace path A. "
            "<image_start>[reasoning_image_1]<image_end> THOUGHT 2: Trace path B. "
            "<image_start>[reasoning_image_2]<image_end> THOUGHT 3: Path A is shorter."
        ),
        "Final Answer": "A",
        "problem_image_1": png(_seed_colour(i)),
        "reasoning_image_1": png(_seed_colour(i + 100)),
        "reasoning_image_2": png(_seed_colour(i + 200)),
    }


def m3cot_row(i: int) -> dict[str, Any]:
    return {
        "id": f"m3cot-{i}", "category": "physical-commonsense", "image_id": f"img{i}",
        "question": f"What is shown in picture {i}?", "choices": ["a cat", "a dog", "a car"],
        "context": "", "answer": "B", "rationale": "The animal barks.\nSo it is a dog.",
        "split": "train", "image": png(_seed_colour(i + 300)), "domain": "commonsense",
        "topic": "animals",
    }


def arxivqa_row(i: int) -> dict[str, Any]:
    return {
        "id": f"cond-mat{i:04d}", "image": f"images/{i:04d}.png",
        "question": f"What does figure {i} show?", "options": ["A. a peak", "B. a dip", "C. noise"],
        "label": "A", "rationale": "The curve rises then falls.",
        "_image_bytes": _png_bytes(_seed_colour(i + 400)),
    }


def geometry3k_row(i: int) -> dict[str, Any]:
    return {"images": [png(_seed_colour(i + 500))], "problem": f"<image>Find x in triangle {i}.",
            "answer": str(3 + i)}


def vstar_row(i: int) -> dict[str, Any]:
    return {
        "image": f"direct_attributes/sa_{i}.jpg", "question_id": i,
        "text": f"What is the colour of the umbrella {i}? (A) red (B) blue (C) green (D) white\n"
                "Answer with the option's letter from the given choices directly.",
        "label": "B", "category": "direct_attributes",
        "_image_bytes": jpeg_bytes(_seed_colour(i + 600)),
    }


def chartqa_row(i: int) -> dict[str, Any]:
    return {"image": png(_seed_colour(i + 700)), "query": f"What is the value of bar {i}?",
            "label": [str(10 + i)], "human_or_machine": i % 2}


def mathvista_row(i: int) -> dict[str, Any]:
    return {
        "pid": str(i + 1), "question": f"What is the area of shape {i}?", "image": f"images/{i + 1}.jpg",
        "decoded_image": png(_seed_colour(i + 800)), "choices": None, "unit": "", "precision": None,
        "answer": str(12 + i), "question_type": "free_form", "answer_type": "integer",
        "metadata": {"source": "fixture", "task": "geometry problem solving"},
        "query": f"Hint: answer with an integer. What is the area of shape {i}?",
    }


def vicbench_row(i: int) -> dict[str, Any]:
    return {"id": str(i), "question": f"How many dots are in grid {i}?",
            "image": png(_seed_colour(i + 900)), "answer": str(2 + i)}


def _png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    png(colour).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- how each source ships
# name -> (row builder, format, image columns, list-of-image columns, local file name)
LAYOUT: dict[str, tuple[Callable[[int], dict[str, Any]], str, tuple[str, ...], tuple[str, ...], str]] = {
    "zebra_cot": (zebra_row, "parquet", ("problem_image_1", "reasoning_image_1", "reasoning_image_2"), (), "train-00000-of-00001.parquet"),
    "m3cot": (m3cot_row, "parquet", ("image",), (), "train-00000-of-00001.parquet"),
    "arxivqa": (arxivqa_row, "jsonl", (), (), "arxivqa.jsonl"),
    "geometry3k": (geometry3k_row, "parquet", (), ("images",), "train-00000-of-00001.parquet"),
    "vstar": (vstar_row, "jsonl", (), (), "test_questions.jsonl"),
    "chartqa": (chartqa_row, "parquet", ("image",), (), "test-00000-of-00001.parquet"),
    "mathvista": (mathvista_row, "parquet", ("decoded_image",), (), "testmini-00000-of-00001.parquet"),
    "vicbench": (vicbench_row, "parquet", ("image",), (), "counting.parquet"),
}

# Bad-input table: name -> field each kind touches, and the reason an empty text gives.
# kinds: missing_field (drop), wrong_type (int), corrupt_image, empty_trace, missing_image
BAD_FIELDS: dict[str, dict[str, Any]] = {
    "zebra_cot": {"drop": "Final Answer", "text": "Question", "image": "reasoning_image_1",
                  "trace": "Text Reasoning Trace", "empty_reason": "empty_trace"},
    "m3cot": {"drop": "answer", "text": "question", "image": "image", "trace": "rationale",
              "empty_reason": "empty_trace"},
    "arxivqa": {"drop": "label", "text": "question", "image": "image", "trace": "rationale",
                "empty_reason": "empty_trace"},
    "geometry3k": {"drop": "answer", "text": "problem", "image": "images", "trace": "problem",
                   "empty_reason": "empty_field"},
    "vstar": {"drop": "label", "text": "text", "image": "image", "trace": "text",
              "empty_reason": "empty_field"},
    "chartqa": {"drop": "label", "text": "query", "image": "image", "trace": "query",
                "empty_reason": "empty_field"},
    "mathvista": {"drop": "answer", "text": "question", "image": "decoded_image",
                  "trace": "question", "empty_reason": "empty_field"},
    "vicbench": {"drop": "answer", "text": "question", "image": "image", "trace": "question",
                 "empty_reason": "empty_field"},
}
BAD_KINDS = ("missing_field", "wrong_type", "corrupt_image", "empty_trace", "missing_image")


def mutate(name: str, row: dict[str, Any], kind: str) -> tuple[dict[str, Any], str, str]:
    """Apply one bad-input kind; return the row, the expected reason and the field named."""
    fields, row = BAD_FIELDS[name], dict(row)
    if kind == "missing_field":
        del row[fields["drop"]]
        return row, "missing_field", fields["drop"]
    if kind == "wrong_type":
        row[fields["text"]] = 12345
        return row, "wrong_type", fields["text"]
    if kind == "empty_trace":
        row[fields["trace"]] = ""
        return row, fields["empty_reason"], fields["trace"]
    image_field = fields["image"]
    if kind == "corrupt_image":
        junk = {"bytes": b"not an image at all", "path": None}
        if name in ("arxivqa", "vstar"):
            row["_image_bytes"] = b"not an image at all"
        elif name == "geometry3k":
            row["images"] = [junk]
            image_field = "images[0]"
        else:
            row[image_field] = junk
        return row, "corrupt_image", image_field
    # missing_image: a placeholder / path / value naming an image that is not there
    if name == "zebra_cot":
        row["Text Reasoning Trace"] += " THOUGHT 4: Check. <image_start>[reasoning_image_3]<image_end>"
        return row, "missing_image", "reasoning_image_3"
    if name in ("arxivqa", "vstar"):
        row["image"] = "images/does_not_exist.png"
    elif name == "geometry3k":
        row["images"] = []
    else:
        row[image_field] = None
    return row, "missing_image", image_field


def write_source(name: str, folder: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows the way upstream ships them; return the local path for the adapter."""
    from datasets import Dataset, Features, List
    from datasets import Image as ImageFeature

    _, fmt, image_cols, list_cols, file_name = LAYOUT[name]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                data = {k: v for k, v in row.items() if k != "_image_bytes"}
                target = folder / data["image"] if isinstance(data.get("image"), str) else None
                if target is not None and "_image_bytes" in row and "does_not_exist" not in str(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(row["_image_bytes"])
                handle.write(json.dumps(data) + "\n")
        return path
    plain = [{k: v for k, v in row.items() if k not in image_cols + list_cols} for row in rows]
    features = Dataset.from_list(plain).features.copy() if plain[0] else Features()
    for col in image_cols:
        if col in rows[0]:
            features[col] = ImageFeature()
    for col in list_cols:
        if col in rows[0]:
            features[col] = List(ImageFeature())
    ordered = [{k: row[k] for k in features} for row in rows]
    Dataset.from_list(ordered, features=features).to_parquet(str(path))
    return path


def write_all(root: Path, rows: int) -> dict[str, Path]:
    """Every source under ``root/<name>/`` (Geometry3K with train and test splits), the
    released Omni-Bench parquet under ``root/omni-bench/`` and Table 3's POPE and MME under
    ``root/pope/``, ``root/mme/``; returns the local paths."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from general_bench_fixtures import write_mme, write_pope
    from released_bench_fixtures import released_rows, write_bench

    paths = {name: write_source(name, root / name, [layout[0](i) for i in range(rows)]).parent
             for name, layout in LAYOUT.items()}  # fmt: skip
    test = write_source("geometry3k", root / "geometry3k_test", [geometry3k_row(i) for i in range(100, 100 + rows)])
    test.replace(paths["geometry3k"] / "test-00000-of-00001.parquet")
    paths["omnibench_release"] = write_bench(root / "omni-bench" / "omni-bench.parquet", released_rows()).parent
    paths["pope"] = write_pope(root / "pope" / "test-00000-of-00001.parquet").parent
    paths["mme"] = write_mme(root / "mme" / "test-00000-of-00001.parquet").parent
    return paths


if __name__ == "__main__":  # python tests/data/upstream_fixtures.py <folder> [rows]: files for `make smoke-paper`
    import sys

    written = write_all(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4)
    print(json.dumps({name: str(path) for name, path in written.items()}))
