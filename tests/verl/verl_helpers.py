"""Records and input-image codes shared by the cluster-engine tests."""

from __future__ import annotations


def make_records(count: int):
    """Records with one input image each; choices and answer types vary."""
    from PIL import Image

    from omni_r1.data.records import Record, RecordStep, to_png

    png = to_png(Image.new("RGB", (32, 32), (200, 30, 30)))
    answers = [("B", ["cat", "dog"], "choice"), ("42", [], "number"), ("red", [], "text")]
    return [
        Record(
            id=f"rec{i}", source="test", uni_task="natural", skills=[],
            question=f"Question {i}: which one?", choices=answers[i % 3][1], input_images=[png],
            steps=[RecordStep(rationale="look")], final_answer=answers[i % 3][0],
            answer_type=answers[i % 3][2],
        )  # fmt: skip
        for i in range(count)
    ]


def make_codes(records, layout):
    import torch

    generator = torch.Generator().manual_seed(1)
    return {
        (r.id, "input_0"): torch.randint(0, layout.num_codes, (layout.tokens_per_image,), generator=generator)
        for r in records
    }

