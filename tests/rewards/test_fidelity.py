"""Functional-image fidelity scorer: hand-built responses scored with a tiny real VQ tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from omni_r1.executor import Executor, GridState
from omni_r1.model.vq import build_decoder
from omni_r1.rewards.fidelity import (
    FidelityInput,
    ImageStatus,
    code_agreement,
    embedding_distance,
    image_steps,
    psnr,
    render_references,
    score_fidelity,
    visual_codec,
)
from omni_r1.trajectory import BBox, Pred, Zoom, parse_trajectory

CAP = 50.0
BBOX_TEXT = "THOUGHT 1: box it.\nACTION: BBOX(0.1, 0.1, 0.4, 0.4)\n<image>\nFinal Answer: 3"


@pytest.fixture(scope="module")
def codec(tiny_builder):
    tiny = tiny_builder(seed=0)
    torch.manual_seed(0)
    decoder = build_decoder(tiny.model.config.vq_config)
    return visual_codec(tiny.model.model.vqmodel, decoder, batch_size=4)


@pytest.fixture(scope="module")
def executor(cfg) -> Executor:
    return Executor(cfg.executor)


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    image = Image.new("RGB", (64, 64), (200, 200, 200))
    image.paste((30, 90, 160), (20, 30, 44, 54))
    return image


def score(inputs, executor, codec, headline="code_agreement"):
    return score_fidelity(inputs, executor, codec, CAP, headline)


# --------------------------------------------------------------------------- pure comparisons


def test_code_agreement_by_hand() -> None:
    generated = torch.tensor([[1, 2, 3, 4], [5, 5, 5, 5]])
    reference = torch.tensor([[1, 2, 0, 0], [5, 5, 5, 5]])
    # row 0: 2 of 4 equal = 0.5; row 1: all equal = 1.0
    torch.testing.assert_close(code_agreement(generated, reference), torch.tensor([0.5, 1.0], dtype=torch.float64))


def test_embedding_distance_by_hand() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])  # K=3, D=2
    generated = torch.tensor([[0, 1]])
    reference = torch.tensor([[0, 2]])
    # positions: ||e0 - e0||² = 0, ||(1,1) - (2,0)||² = 1 + 1 = 2 → mean 1 → / D = 0.5
    torch.testing.assert_close(embedding_distance(generated, reference, codebook), torch.tensor([0.5], dtype=torch.float64))


def test_psnr_by_hand_and_capped() -> None:
    black = torch.full((1, 3, 2, 2), -1.0)  # 0 on the [0, 1] scale
    grey = torch.zeros((1, 3, 2, 2))  # 0.5 on the [0, 1] scale
    # MSE = 0.25 → 10·log10(1 / 0.25) = 10·log10(4) = 6.0206 dB
    torch.testing.assert_close(psnr(black, grey, CAP), torch.tensor([10 * math.log10(4.0)], dtype=torch.float64))
    assert psnr(grey, grey, CAP).item() == CAP  # MSE 0: the cap, not infinity
    assert psnr(grey, grey + 1e-6, CAP).item() == CAP  # above the cap: the cap


def test_images_are_placed_on_steps_with_slots_in_order() -> None:
    parsed = parse_trajectory("THOUGHT 1: a.\n<image>\nTHOUGHT 2: b.\nTHOUGHT 3: c.\n<image>\nFinal Answer: 1")
    assert image_steps(parsed, 3) == [0, 2, None]  # the third image has no slot


# --------------------------------------------------------------------------- the scorer


def test_image_equal_to_rendering_scores_full_agreement_and_capped_psnr(scene, executor, codec) -> None:
    rendering = executor.execute(BBox(x=0.1, y=0.1, w=0.4, h=0.4), scene).image
    codes = codec.encode([rendering])  # [1, H*W]
    scores = score([FidelityInput(BBOX_TEXT, codes, scene)], executor, codec)
    assert scores.status == (ImageStatus.SCORED,)
    assert scores.code_agreement.tolist() == [1.0]
    assert scores.embedding_distance.tolist() == [0.0]
    assert scores.psnr.tolist() == [CAP]
    assert scores.headline.tolist() == [1.0]
    assert scores.counts() == {"scored": 1, "no_action": 0, "rejected": 0}


def test_shifted_box_scores_lower(scene, executor, codec) -> None:
    wrong = executor.execute(BBox(x=0.5, y=0.5, w=0.4, h=0.4), scene).image
    right = executor.execute(BBox(x=0.1, y=0.1, w=0.4, h=0.4), scene).image
    codes = codec.encode([right, wrong])  # [2, H*W]
    inputs = [FidelityInput(BBOX_TEXT, codes[i : i + 1], scene) for i in range(2)]
    scores = score(inputs, executor, codec)
    assert scores.code_agreement[1] < scores.code_agreement[0] == 1.0
    assert scores.embedding_distance[1] > scores.embedding_distance[0] == 0.0
    assert scores.psnr[1] < scores.psnr[0] == CAP
    torch.testing.assert_close(scores.per_response(), scores.code_agreement)


def test_missing_and_rejected_actions_are_counted_not_dropped(executor, codec) -> None:
    grid = GridState.from_ascii("A#\n.G")
    text = (
        "THOUGHT 1: look.\n<image>\n"  # an image without an action
        "THOUGHT 2: go right.\nACTION: PRED(grid_move: right)\n<image>\n"  # into a wall: rejected
        "THOUGHT 3: go down.\nACTION: PRED(grid_move: down)\n<image>\n"  # allowed from the unchanged state
        "Final Answer: 2"
    )
    below = grid.moved("down").render(executor.cfg)
    codes = codec.encode([below, below, below])  # [3, H*W]
    extra = torch.cat([codes, codes[:1]])  # a fourth image with no step: no_action
    scores = score([FidelityInput(text, extra, None, grid)], executor, codec)
    assert [s.value for s in scores.status] == ["no_action", "rejected", "scored", "no_action"]
    assert scores.counts() == {"scored": 1, "no_action": 2, "rejected": 1}
    assert "wall" in scores.references[1].reason
    assert scores.code_agreement[2].item() == 1.0  # the rejected move left the agent in place
    assert torch.isnan(scores.code_agreement[[0, 1, 3]]).all()
    assert [len(r) for r in scores.renderings()] == [4]


def test_second_step_is_scored_against_the_rendered_state_not_the_generated_image(scene, executor, codec) -> None:
    boxed = executor.execute(BBox(x=0.1, y=0.1, w=0.4, h=0.4), scene).image
    zoomed = executor.execute(Zoom(x=0.0, y=0.0, w=0.5, h=0.5), boxed).image
    text = (
        "THOUGHT 1: box.\nACTION: BBOX(0.1, 0.1, 0.4, 0.4)\n<image>\n"
        "THOUGHT 2: zoom.\nACTION: ZOOM(0.0, 0.0, 0.5, 0.5)\n<image>\nFinal Answer: 1"
    )
    noise = torch.zeros_like(codec.encode([scene]))  # a generated first image unlike the rendering
    codes = torch.cat([noise, codec.encode([zoomed])])  # [2, H*W]
    scores = score([FidelityInput(text, codes, scene)], executor, codec)
    assert scores.code_agreement[0] < 1.0
    assert scores.code_agreement[1].item() == 1.0
    # the per-response mean pools both scored images
    torch.testing.assert_close(scores.per_response(), scores.code_agreement.mean().reshape(1))


def test_zoom_without_an_input_image_is_rejected(executor, codec) -> None:
    text = "THOUGHT 1: zoom.\nACTION: ZOOM(0.0, 0.0, 0.5, 0.5)\n<image>\nFinal Answer: 1"
    references = render_references(text, 1, None, None, executor)
    assert references[0].status == ImageStatus.REJECTED and references[0].rendering is None


def test_psnr_headline_and_missing_decoder(scene, executor, codec) -> None:
    rendering = executor.execute(BBox(x=0.1, y=0.1, w=0.4, h=0.4), scene).image
    codes = codec.encode([rendering])
    inputs = [FidelityInput(BBOX_TEXT, codes, scene), FidelityInput("Final Answer: 1", codes[:0], scene)]
    scores = score(inputs, executor, codec, headline="psnr")
    assert scores.headline.tolist() == [1.0]  # PSNR / cap
    assert math.isnan(scores.per_response()[1])  # no image: no score
    no_decoder = type(codec)(encode=codec.encode, codebook=codec.codebook, decode=None)
    assert torch.isnan(score(inputs, executor, no_decoder).psnr).all()
    with pytest.raises(KeyError, match="known: code_agreement, psnr"):
        score(inputs, executor, codec, headline="ssim")


def test_pred_rendering_is_the_next_state(executor) -> None:
    grid = GridState.from_ascii("A.\n.G")
    references = render_references(
        "THOUGHT 1: right.\nACTION: PRED(grid_move: right)\n<image>\nFinal Answer: 2", 1, None, grid, executor
    )
    expected = executor.execute(Pred(transition="grid_move", delta="right"), None, grid).image
    assert references[0].rendering.tobytes() == expected.tobytes()


def test_equal_codes_are_not_decoded() -> None:
    from omni_r1.rewards.fidelity import decoded_psnr

    decoded_rows: list[int] = []

    def decode(codes: torch.Tensor) -> torch.Tensor:  # code c → a flat image of value c/10 - 1 in [-1, 1]
        decoded_rows.append(codes.shape[0])
        return (codes.double().mean(-1) / 10.0 - 1.0).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)

    generated = torch.tensor([[1, 1], [0, 0]])
    reference = torch.tensor([[1, 1], [10, 10]])
    values = decoded_psnr(generated, reference, decode, CAP)
    assert decoded_rows == [2]  # only the differing pair, generated and reference in one pass
    # row 1: pixels -1 vs 0 → 0 vs 0.5 on [0, 1] → MSE 0.25 → 6.0206 dB
    torch.testing.assert_close(values, torch.tensor([CAP, 10 * math.log10(4.0)], dtype=torch.float64))


def test_each_distinct_code_grid_is_decoded_once() -> None:
    from omni_r1.rewards.fidelity import decoded_psnr

    decoded: list[torch.Tensor] = []

    def decode(codes: torch.Tensor) -> torch.Tensor:  # code c → a flat image of value c/10 - 1 in [-1, 1]
        decoded.append(codes.clone())
        return (codes.double().mean(-1) / 10.0 - 1.0).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)

    generated = torch.tensor([[0, 0], [0, 0], [5, 5]])  # two answers drew the same grid
    reference = torch.tensor([[10, 10], [20, 20], [10, 10]])
    values = decoded_psnr(generated, reference, decode, CAP)
    assert len(decoded) == 1 and decoded[0].shape[0] == 4  # grids 0, 5, 10, 20: each once
    # pixels on [0, 1]: 0 vs 0.5, 0 vs 1 (MSE 1 → 0 dB), 0.25 vs 0.5 (MSE 1/16 → 12.04 dB)
    expected = [10 * math.log10(4.0), 0.0, 10 * math.log10(16.0)]
    torch.testing.assert_close(values, torch.tensor(expected, dtype=torch.float64))
