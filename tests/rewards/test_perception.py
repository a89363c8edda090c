"""Perception reward: hand-computed TV, maps, aggregations, segment finding, vectorised == loop."""

from __future__ import annotations

import math

import pytest
import torch
from perception_reference import perception_score_reference

from omni_r1.model.layout import TokenLayout
from omni_r1.rewards.perception import (
    AGGREGATIONS,
    codebook_squared_distances,
    exp_score,
    find_image_segments,
    inv_score,
    perception_score,
    segment_total_variation,
    segment_total_variation_from_table,
)

# ids: 0..3 special, image tokens 10..15 (6 codes), EOI 20, BOI 21, text 22..29
LAYOUT = TokenLayout(
    bos_id=0, pad_id=1, eos_id=2, boi_id=21, eoi_id=20, image_token_start=10, num_codes=6,
    grid_h=2, grid_w=2, image_size=16, reasoning_open_id=22, reasoning_close_id=23,
    answer_open_id=24, answer_close_id=25, vocab_size=30,
)  # fmt: skip
# D = 2. Code 0 = (0,0), 1 = (1,0), 2 = (0,2), 3 = (1,2), 4 = (3,3), 5 = (0,0)
CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 2.0], [3.0, 3.0], [0.0, 0.0]])


def image(codes: list[int]) -> list[int]:
    return [LAYOUT.boi_id] + [LAYOUT.image_token_start + c for c in codes] + [LAYOUT.eoi_id]


def test_total_variation_of_a_2x2_grid_by_hand() -> None:
    # grid [[c0, c1], [c2, c3]] = [[(0,0), (1,0)], [(0,2), (1,2)]]
    # horizontal pairs: ||(1,0)-(0,0)||² = 1, ||(1,2)-(0,2)||² = 1 -> mean 1
    # vertical pairs:   ||(0,2)-(0,0)||² = 4, ||(1,2)-(1,0)||² = 4 -> mean 4
    # TV = (1 + 4) / D = 5 / 2 = 2.5
    codes = torch.tensor([[0, 1, 2, 3]])
    assert segment_total_variation(codes, CODEBOOK, 2, 2).item() == pytest.approx(2.5)
    table = codebook_squared_distances(CODEBOOK)
    assert segment_total_variation_from_table(codes, table, 2, 2, 2).item() == pytest.approx(2.5)
    # a constant image has TV 0
    assert segment_total_variation(torch.tensor([[4, 4, 4, 4]]), CODEBOOK, 2, 2).item() == 0.0


def test_score_maps_by_hand() -> None:
    tv = torch.tensor([0.0, 3.0, 6.0])
    # exp(-TV/3): 1, e^-1 = 0.3679, e^-2 = 0.1353
    torch.testing.assert_close(exp_score(tv, 3.0), torch.tensor([1.0, math.exp(-1), math.exp(-2)]))
    # 1/(1+TV/3): 1, 1/2, 1/3
    torch.testing.assert_close(inv_score(tv, 3.0), torch.tensor([1.0, 0.5, 1 / 3]))


def test_aggregations_by_hand() -> None:
    # row 0: {0.2, 0.8, 0.5}; row 1: {0.4, 0.6}; row 2: none
    padded = torch.tensor([[0.2, 0.8, 0.5], [0.4, 0.6, math.nan], [math.nan] * 3])
    counts = torch.tensor([3, 2, 0])
    expected = {
        "min": [0.2, 0.4],
        "max": [0.8, 0.6],
        "mean": [0.5, 0.5],  # (0.2+0.8+0.5)/3 = 0.5 ; (0.4+0.6)/2 = 0.5
        "median": [0.5, 0.5],  # middle of 0.2,0.5,0.8 ; (0.4+0.6)/2
    }
    for name, values in expected.items():
        result = AGGREGATIONS[name](padded, counts)
        torch.testing.assert_close(result[:2], torch.tensor(values))
        assert math.isnan(result[2].item())


def test_only_complete_segments_count() -> None:
    text = [26, 27]
    rows = [
        text + image([0, 1, 2, 3]) + text + image([4, 4, 4, 4]),  # two complete images
        text + image([0, 1, 2]) + text + [1, 1, 1, 1],  # 3 image tokens: incomplete
        text + [LAYOUT.boi_id, 10, 11, 12, 13] + [1] * 6,  # no EOI
        text + image([0, 1, 2, 3]) + [1] * 3,  # complete but masked out below
    ]
    length = max(map(len, rows))
    ids = torch.tensor([r + [1] * (length - len(r)) for r in rows])
    mask = torch.ones_like(ids)
    mask[3, 2:] = 0  # the image of row 3 is padding
    segments = find_image_segments(ids, mask, LAYOUT)
    assert segments.batch_index.tolist() == [0, 0]
    assert segments.codes.tolist() == [[0, 1, 2, 3], [4, 4, 4, 4]]
    scores = perception_score(ids, mask, CODEBOOK, LAYOUT, tau=3.0, score_map="inv", aggregation="min")
    assert scores.has_image.tolist() == [True, False, False, False]
    # row 0: TV 2.5 -> 1/(1+2.5/3) = 6/11 ; TV 0 -> 1 ; min = 6/11
    assert scores.score[0].item() == pytest.approx(6 / 11)
    assert torch.isnan(scores.score[1:]).all()


@pytest.mark.parametrize("aggregation", ["min", "mean", "max", "median"])
@pytest.mark.parametrize("score_map", ["exp", "inv"])
def test_vectorised_equals_reference_on_random_batches(aggregation: str, score_map: str) -> None:
    generator = torch.Generator().manual_seed(0)
    layout = TokenLayout(
        bos_id=0, pad_id=1, eos_id=2, boi_id=71, eoi_id=70, image_token_start=4, num_codes=64,
        grid_h=3, grid_w=4, image_size=48, reasoning_open_id=72, reasoning_close_id=73,
        answer_open_id=74, answer_close_id=75, vocab_size=80,
    )  # fmt: skip
    codebook = torch.randn(64, 8, generator=generator)
    rows = []
    for row in range(6):
        tokens: list[int] = []
        for piece in range(row % 4):
            size = 12 if (row + piece) % 3 else 11  # some incomplete images
            tokens += [72, 73] + [71] + torch.randint(4, 68, (size,), generator=generator).tolist() + [70]
        rows.append(tokens + [76])
    length = max(map(len, rows))
    ids = torch.tensor([r + [1] * (length - len(r)) for r in rows])
    mask = (torch.arange(length) < torch.tensor([len(r) for r in rows]).unsqueeze(1)).long()
    kwargs = dict(tau=3.0, score_map=score_map, aggregation=aggregation)
    fast = perception_score(ids, mask, codebook, layout, **kwargs)
    table = perception_score(ids, mask, codebook, layout, squared_distances=codebook_squared_distances(codebook), **kwargs)
    slow = perception_score_reference(ids, mask, codebook, layout, **kwargs)
    assert fast.segment_count.tolist() == slow.segment_count.tolist()
    assert int(slow.segment_count.sum()) >= 4  # the batch really has segments
    torch.testing.assert_close(fast.segment_tv, slow.segment_tv)
    torch.testing.assert_close(fast.score, slow.score, equal_nan=True)
    torch.testing.assert_close(table.score, slow.score, equal_nan=True)
    assert fast.has_image.tolist() == slow.has_image.tolist()


def test_unknown_names_are_errors_naming_the_choices() -> None:
    ids = torch.tensor([image([0, 1, 2, 3])])
    with pytest.raises(KeyError, match="known: exp, inv"):
        perception_score(ids, torch.ones_like(ids), CODEBOOK, LAYOUT, tau=3.0, score_map="log", aggregation="min")
