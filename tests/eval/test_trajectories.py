"""Trajectory gallery of an evaluated checkpoint: decoded generated images on a self-contained page."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from PIL import Image

from omni_r1.eval.evaluate import codebook_of, generate_responses, load_bench, prediction_rows
from omni_r1.eval.judges import JudgeItem, build_judge
from omni_r1.eval.trajectories import render_checkpoint_gallery, spread_over_slices
from omni_r1.gallery import place_images
from omni_r1.model.images import decode_codes
from omni_r1.model.packing import pack_prompt
from omni_r1.trajectory import parse_trajectory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_examples_are_spread_over_slices() -> None:
    slices = ["a", "a", "a", "b", "b", "c"]
    assert spread_over_slices(slices, 3) == [0, 3, 5]
    assert spread_over_slices(slices, 5) == [0, 1, 3, 4, 5]
    assert spread_over_slices(slices, 10) == list(range(6))


def test_every_decoded_image_is_placed_even_outside_steps() -> None:
    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    response = "<image>\nTHOUGHT 1: look.\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n<image>\nFinal Answer: 3"
    steps = place_images(parse_trajectory(response).steps, [red, blue])
    assert [s.image for s in steps if s.image is not None] == [red, blue]
    assert steps[0].action is not None and steps[0].action.kind == "ZOOM"


@pytest.fixture(scope="module")
def gallery_html(bench_dirs, tiny_omni, cfg) -> str:
    items = load_bench(*bench_dirs, max_per_slice=1)
    boi = tiny_omni.layout.boi_id
    kwargs = {"max_new_tokens": 40, "do_sample": False, "sequence_bias": {(boi,): 30.0}}  # draw an image
    prompts = [pack_prompt(i.prompt_trajectory(), tiny_omni.layout, tiny_omni.tokenizer, i.input_codes) for i in items]
    generations = generate_responses(tiny_omni, prompts, kwargs, max_images=1, batch_size=4)
    judge = build_judge(cfg.judge, cfg.reward)
    verdicts = judge([JudgeItem(i.record.final_answer, g.text) for i, g in zip(items, generations, strict=True)])
    codebook = codebook_of(tiny_omni)
    rows = prediction_rows(items, generations, verdicts, [0.5] * len(items), codebook)
    assert all(row["images"] == 1 for row in rows)

    def decode(codes):
        return decode_codes(tiny_omni.vq_decoder, tiny_omni.model.model.vqmodel, codes)

    return render_checkpoint_gallery(rows, [i.record.input_images for i in items], decode, 4, "test gallery")


def test_gallery_page_holds_input_and_generated_images(gallery_html, bench_dirs) -> None:
    assert gallery_html.count("<section") == 4
    # one input image and one decoded generated image per entry
    assert gallery_html.count('alt="input image 1"') == 4
    assert gallery_html.count('alt="step') == 4
    assert "Verdict:" in gallery_html and "Reference:" in gallery_html
    assert "http://" not in gallery_html and "https://" not in gallery_html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`)")
def test_gallery_renders_in_headless_chromium(gallery_html, tmp_path) -> None:
    page = tmp_path / "gallery.html"
    page.write_text(gallery_html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=900,1400",
         page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "screenshot is (nearly) blank: images did not render"
    # the synthetic input images hold saturated colours that plain text never has
    saturated = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 80)
    assert saturated > 100
