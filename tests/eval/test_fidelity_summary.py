"""Fidelity summaries per slice (hand-built scores), predictions columns, MLflow names, gallery notes."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from omni_r1.eval.fidelity import fidelity_metrics, mlflow_fidelity_metrics, row_fields
from omni_r1.eval.trajectories import fidelity_note
from omni_r1.gallery import GalleryEntry, place_images, render_gallery_html
from omni_r1.rewards.fidelity import FidelityScores, ImageStatus, Reference
from omni_r1.trajectory import parse_trajectory

NAN = math.nan
S, N, R = ImageStatus.SCORED, ImageStatus.NO_ACTION, ImageStatus.REJECTED


def hand_scores() -> FidelityScores:
    """3 answers: a0 two scored images (agreement 1.0, 0.5); a1 one image without action;
    a2 one scored (0.25) and one rejected."""
    status = (S, S, N, S, R)
    agreement = torch.tensor([1.0, 0.5, NAN, 0.25, NAN], dtype=torch.float64)
    return FidelityScores(
        response_index=torch.tensor([0, 0, 1, 2, 2]),
        status=status,
        references=tuple(Reference(s, None, None, "") for s in status),
        code_agreement=agreement,
        embedding_distance=torch.tensor([0.0, 0.2, NAN, 0.4, NAN], dtype=torch.float64),
        psnr=torch.tensor([50.0, 20.0, NAN, 10.0, NAN], dtype=torch.float64),
        headline=agreement,
        response_count=3,
    )


@pytest.fixture
def fidelity_cfg(cfg):
    return cfg.model_copy(update={
        "fidelity": cfg.fidelity.model_copy(update={"pass_threshold": 0.5, "headline": "code_agreement"}),
        "intervals": cfg.intervals.model_copy(update={"resamples": 2000, "confidence": 0.95}),
    })  # fmt: skip


def test_summary_per_slice_by_hand(fidelity_cfg) -> None:
    block = fidelity_metrics(["natural", "natural", "structured"], hand_scores(), fidelity_cfg)
    assert list(block) == ["headline", "pass_threshold", "natural", "structured", "average"]
    natural, structured, average = block["natural"], block["structured"], block["average"]
    assert natural["images"] == {"scored": 2, "no_action": 1, "rejected": 0}
    assert structured["images"] == {"scored": 1, "no_action": 0, "rejected": 1}
    assert average["images"] == {"scored": 3, "no_action": 1, "rejected": 1}
    # natural: (1.0 + 0.5) / 2 = 0.75; a1 has no scored image, so every resample with a0 gives
    # 0.75 and the resample {a1, a1} has no value: the interval is [0.75, 0.75]
    assert natural["code_agreement"] == {"mean": 0.75, "low": 0.75, "high": 0.75}
    assert natural["pass_share"]["mean"] == 1.0  # 1.0 and 0.5 both reach 0.5
    assert structured["code_agreement"]["mean"] == 0.25 and structured["pass_share"]["mean"] == 0.0
    assert average["code_agreement"]["mean"] == pytest.approx(1.75 / 3)
    assert average["pass_share"]["mean"] == pytest.approx(2 / 3)
    assert average["embedding_distance"]["mean"] == pytest.approx(0.6 / 3)
    assert average["psnr"]["mean"] == pytest.approx(80.0 / 3)
    low, high = average["code_agreement"]["low"], average["code_agreement"]["high"]
    assert 0.25 <= low < average["code_agreement"]["mean"] < high <= 1.0


def test_slice_without_scored_images_has_no_value(fidelity_cfg) -> None:
    block = fidelity_metrics(["natural", "vision_operational", "natural"], hand_scores(), fidelity_cfg)
    assert block["vision_operational"]["code_agreement"] == {"mean": None, "low": None, "high": None}
    flat = mlflow_fidelity_metrics(block)
    assert flat["fidelity.vision_operational.images.no_action"] == 1.0
    assert "fidelity.vision_operational.code_agreement" not in flat
    assert flat["fidelity.average.code_agreement"] == pytest.approx(1.75 / 3)
    assert flat["fidelity.average.pass_share.low"] <= flat["fidelity.average.pass_share.high"]


def test_row_fields_keep_every_image(fidelity_cfg) -> None:
    rows = row_fields(hand_scores())
    assert [r["fidelity_status"] for r in rows] == [["scored", "scored"], ["no_action"], ["scored", "rejected"]]
    assert rows[0]["fidelity"] == 0.75 and math.isnan(rows[1]["fidelity"]) and rows[2]["fidelity"] == 0.25
    assert rows[0]["fidelity_psnr"] == [50.0, 20.0]
    with pytest.raises(ValueError, match="2 slices for 3"):
        fidelity_metrics(["natural", "natural"], hand_scores(), fidelity_cfg)


def test_gallery_shows_generated_image_beside_rendering_with_scores() -> None:
    row = row_fields(hand_scores())[2]
    generated, rendering = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    response = (
        "THOUGHT 1: box.\nACTION: BBOX(0.1, 0.1, 0.4, 0.4)\n<image>\n"
        "THOUGHT 2: move.\nACTION: PRED(grid_move: up)\n<image>\nFinal Answer: 1"
    )
    notes = [fidelity_note(row, k) for k in range(2)]
    steps = place_images(parse_trajectory(response).steps, [generated, generated], [rendering, None], notes)
    assert steps[0].rendering is rendering and steps[1].rendering is None
    assert notes[0] == "fidelity: code agreement 0.250 · embedding distance 0.4000 · PSNR 10.0 dB"
    assert notes[1] == "fidelity: not scored (rejected)"
    page = render_gallery_html([GalleryEntry("q", steps, "1")], "t")
    assert page.count('alt="step 1 rendering"') == 1 and page.count('alt="step 2 rendering"') == 0
    assert page.index('alt="step 1 image"') < page.index('alt="step 1 rendering"')  # side by side, generated first
    assert "code agreement 0.250" in page and "not scored (rejected)" in page
