"""Tiny local copies of Table 3 benchmarks in their upstream formats (lmms-lab/POPE, lmms-lab/MME).

Used by the general-bench tests and by the paper-shape smoke (``upstream_fixtures.write_all``).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def image(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (24, 24), colour)


def write_pope(path: Path) -> Path:
    """lmms-lab/POPE test split: id, question_id, question, answer, image_source, image, category."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    rows = [
        {"id": str(i), "question_id": str(i + 1), "question": f"Is there a {obj} in the image?", "answer": ans,
         "image_source": f"COCO_val2014_{i:012d}", "image": image((40 * i, 0, 0)), "category": "adversarial"}
        for i, (obj, ans) in enumerate([("dog", "yes"), ("cat", "no"), ("car", "yes"), ("bus", "no")])
    ]  # fmt: skip
    features = Features({k: Value("string") for k in rows[0] if k != "image"} | {"image": ImageFeature()})
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def write_mme(path: Path) -> Path:
    """lmms-lab/MME test split: question_id (the image file, shared by its two questions), image, question, answer, category."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    rows = [
        {"question_id": f"{cat}/{img}.jpg", "image": image((0, 50 * img, 0)), "question": f"Q{k}? Please answer yes or no.",
         "answer": ans, "category": cat}
        for cat, img, k, ans in [("existence", 1, 0, "Yes"), ("existence", 1, 1, "No"),
                                 ("code_reasoning", 2, 0, "Yes"), ("code_reasoning", 2, 1, "No")]
    ]  # fmt: skip
    features = Features({k: Value("string") for k in rows[0] if k != "image"} | {"image": ImageFeature()})
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path
