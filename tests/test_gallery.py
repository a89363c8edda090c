"""The trajectory gallery page and the ``gallery`` stage."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from omni_r1.config import Config
from omni_r1.gallery import (
    OUTSIDE_STEP,
    GalleryEntry,
    GalleryStep,
    gallery_entry,
    image_data_uri,
    render_gallery_html,
)
from omni_r1.stages import gallery as gallery_stage
from omni_r1.trajectory import BBox, Mark, Step, Trajectory, Zoom

DATA_URI_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
NASTY = "<script>alert(\"x\")</script> & 'quotes'"


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


def decoded_images(page: str) -> list[Image.Image]:
    images = []
    for payload in DATA_URI_RE.findall(page):
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert image.format == "PNG"
        images.append(image.convert("RGB"))
    return images


def sample_entries() -> list[GalleryEntry]:
    first = GalleryEntry(
        question=f"What is {NASTY}?",
        input_images=(solid((40, 30), (255, 0, 0)),),
        steps=(
            GalleryStep("Zoom in.", Zoom(x=0.1, y=0.2, w=0.3, h=0.4), solid((16, 16), (0, 255, 0))),
            GalleryStep(f"Think {NASTY}."),
            GalleryStep("Mark it.", Mark(x=0.5, y=0.5, label="a b"), solid((16, 16), (0, 0, 255))),
        ),
        final_answer=f"answer {NASTY}",
        reference_answer="ref <b>",
        verdict=False,
        name="first <one>",
    )
    second = GalleryEntry(
        question="Second?",
        input_images=(solid((20, 20), (9, 9, 9)), solid((8, 24), (200, 100, 0))),
        steps=(GalleryStep("Only text."),),
        final_answer=None,
    )
    return [first, second]


def test_one_img_per_image_with_decodable_pngs_in_order() -> None:
    entries = sample_entries()
    page = render_gallery_html(entries, title="Gallery & <tests>")
    expected = [
        image
        for entry in entries
        for image in (*entry.input_images, *(s.image for s in entry.steps if s.image is not None))
    ]
    assert page.count("<img") == len(expected)
    decoded = decoded_images(page)
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected, strict=True):
        assert got.size == want.size
        assert got.tobytes() == want.tobytes()


def test_text_is_escaped_and_page_is_self_contained() -> None:
    page = render_gallery_html(sample_entries(), title="Gallery & <tests>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quotes&#x27;" in page
    assert "<title>Gallery &amp; &lt;tests&gt;</title>" in page
    assert "first &lt;one&gt;" in page
    assert "ref &lt;b&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,")


def test_actions_answer_and_verdict_are_shown() -> None:
    page = render_gallery_html(sample_entries(), title="t")
    assert "ZOOM(0.1, 0.2, 0.3, 0.4)" in page
    assert "MARK(0.5, 0.5, &quot;a b&quot;)" in page
    assert "THOUGHT 3:" in page
    assert "verdict-false" in page
    assert page.count('class="trajectory"') == 2
    assert "(none)" in page  # the second entry has no final answer


def test_data_uri_is_a_png_of_the_image() -> None:
    image = Image.new("RGB", (7, 5), (1, 2, 3))
    payload = image_data_uri(image).removeprefix("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert decoded.format == "PNG" and decoded.size == (7, 5)
    assert decoded.convert("RGB").getpixel((3, 3)) == (1, 2, 3)


def image_steps_trajectory() -> Trajectory:
    return Trajectory(
        question="q",
        input_images=(solid((10, 10), (0, 0, 0)),),
        steps=(
            Step(rationale="box", action=BBox(x=0, y=0, w=0.5, h=0.5), has_image=True),
            Step(rationale="text only"),
            Step(rationale="zoom", action=Zoom(x=0, y=0, w=0.5, h=0.5), has_image=True),
        ),
        final_answer="a",
    )


def test_entry_places_images_on_image_steps() -> None:
    traj = image_steps_trajectory()
    images = [solid((4, 4), (1, 1, 1)), solid((4, 4), (2, 2, 2))]
    entry = gallery_entry(
        traj.question, traj.steps, images, traj.final_answer,
        input_images=traj.input_images, verdict=True,
    )  # fmt: skip
    assert [step.image for step in entry.steps] == [images[0], None, images[1]]
    assert entry.steps[2].action == traj.steps[2].action
    assert entry.input_images == traj.input_images and entry.verdict is True


def test_entry_keeps_images_beyond_the_image_slots_and_leaves_missing_ones_empty() -> None:
    traj = image_steps_trajectory()
    images = [solid((4, 4), (value, value, value)) for value in (1, 2, 3, 4)]
    entry = gallery_entry(traj.question, traj.steps, images, traj.final_answer)
    shown = [step.image for step in entry.steps if step.image is not None]
    assert shown == images  # every image, in order
    assert [step.rationale for step in entry.steps[3:]] == [OUTSIDE_STEP, OUTSIDE_STEP]
    page = render_gallery_html([entry], title="t")
    assert page.count('alt="step') == 4
    short = gallery_entry(traj.question, traj.steps, images[:1], traj.final_answer)
    assert [step.image for step in short.steps] == [images[0], None, None]


def test_stage_writes_page_metrics_and_mlflow_artifact(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_tmp: str
) -> None:
    monkeypatch.chdir(tmp_path)
    gallery_cfg = cfg.gallery.model_copy(
        update={"out_dir": str(tmp_path / "out"), "metrics_path": "metrics/gallery.json"}
    )
    result = gallery_stage.run(cfg.model_copy(update={"gallery": gallery_cfg}))

    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    metrics = json.loads((tmp_path / "metrics" / "gallery.json").read_text())
    assert metrics == result["metrics"]
    assert metrics["trajectories"] == cfg.gallery.examples
    assert page.count('class="trajectory"') == cfg.gallery.examples
    assert page.count("<img") == metrics["input_images"] + metrics["step_images"]
    assert sum(metrics["images_per_action"].values()) == metrics["step_images"]
    assert all(count >= 1 for count in metrics["images_per_action"].values())
    side = cfg.executor.resolution
    step_sizes = [image.size for image in decoded_images(page)]
    assert step_sizes.count((side, side)) >= metrics["step_images"]

    client = mlflow.MlflowClient(tracking_uri=mlflow_tmp)
    run = client.get_run(result["run_id"])
    assert run.data.tags["omni_r1.stage"] == "gallery"
    assert run.data.metrics["trajectories"] == metrics["trajectories"]
    artifacts = [item.path for item in client.list_artifacts(result["run_id"], "gallery")]
    assert artifacts == ["gallery/index.html"]
