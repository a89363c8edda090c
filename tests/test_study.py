"""The study's regimes: text-only records, and identical prompts and budgets under one seed."""

from __future__ import annotations

import math

import pytest
import torch
from hand_batch import HAND_IDS, HAND_LAYOUT
from PIL import Image

from omni_r1.data.records import Record, RecordStep, record_to_trajectory, text_only_record, to_png
from omni_r1.eval.paired import accuracy_intervals, compare_paired
from omni_r1.model.packing import IGNORE_INDEX, PackedSequence, images_as_context
from omni_r1.study import (
    REGIMES,
    STUDY_TRACK,
    budget,
    image_statistics,
    regime_config,
    study_markdown,
)
from omni_r1.training.rollout import PromptCursor
from omni_r1.trajectory import IMAGE_SLOT, BBox, parse_trajectory, render_trajectory


def record_with_images() -> Record:
    png = to_png(Image.new("RGB", (16, 16), (9, 9, 9)))
    return Record(
        id="r0", source="test", uni_task="natural", skills=["bbox"], question="Where?", choices=[],
        input_images=[png],
        steps=[RecordStep(rationale="Box it.", action=BBox(x=0.1, y=0.1, w=0.5, h=0.5), image=png),
               RecordStep(rationale="Free sketch.", image=png), RecordStep(rationale="Done.")],
        final_answer="left", answer_type="text",
    )  # fmt: skip


def test_text_only_record_has_no_image_slot_and_keeps_rationale_and_action():
    record = record_with_images()
    text = render_trajectory(record_to_trajectory(text_only_record(record)))
    assert IMAGE_SLOT not in text
    assert all(step.image is None and step.action is None for step in text_only_record(record).steps)
    parsed = parse_trajectory(text)
    assert parsed.ok and parsed.image_count == 0
    assert parsed.steps[0].rationale == "Box it. Action: BBOX(0.1, 0.1, 0.5, 0.5)"
    assert [s.rationale for s in parsed.steps[1:]] == ["Free sketch.", "Done."]
    same = text_only_record(record)
    assert (same.question, same.input_images, same.final_answer) == (record.question, record.input_images, "left")


def test_images_as_context_unlabels_image_tokens_and_eoi_only():
    ids = HAND_IDS[0]  # text, BOI, 4 image tokens, EOI, text
    labels = ids.clone()
    labels[0] = IGNORE_INDEX
    sequence = images_as_context(PackedSequence(ids, torch.ones_like(ids), labels, ()), HAND_LAYOUT)
    assert sequence.labels.tolist() == [IGNORE_INDEX, 21] + [IGNORE_INDEX] * 5 + [27]


def test_regimes_share_prompts_budgets_and_order_under_one_seed(cfg):
    configs = {regime: regime_config(cfg, regime) for regime in REGIMES}
    budgets = [budget(c) for c in configs.values()]
    assert all(b == budgets[0] for b in budgets)
    assert budgets[0]["perpo.max_steps"] == cfg.perpo.max_steps
    orders = [PromptCursor(16, c.run.seed).take(40) for c in configs.values()]
    assert orders[0] == orders[1] == orders[2]
    assert configs["text_only"].perception.weight == 0 and configs["rendered"].reward.perception_weight == 0
    assert configs["generated"].perception.weight == cfg.perception.weight
    assert configs["text_only"].pesft.datasets == {STUDY_TRACK: cfg.study.text_only_dataset}
    assert configs["rendered"].pesft.datasets == {STUDY_TRACK: cfg.study.dataset}
    assert len({c.paths.checkpoints_dir for c in configs.values()}) == 3


def test_unknown_regime_is_an_error_naming_it(cfg):
    with pytest.raises(ValueError, match="drawn"):
        regime_config(cfg, "drawn")


def test_image_statistics_describe_generated_images_only():
    rows = [{"images": 2, "perception": 0.5, "fidelity": 1.0}, {"images": 0, "perception": math.nan, "fidelity": math.nan}]
    assert image_statistics("generated", rows) == {"images_per_answer": 1.0, "perception": 0.5, "fidelity": 1.0}
    rendered = image_statistics("rendered", rows)
    assert rendered["images_per_answer"] == 1.0 and math.isnan(rendered["perception"]) and math.isnan(rendered["fidelity"])


def test_report_says_which_differences_are_distinguishable_from_noise():
    """30 items: B right on all, A on none (p = 2 / 2^30); C equals A (no discordant item, p = 1)."""
    wrong, right = [False] * 30, [True] * 30
    paired = {
        "B − A": {"average": compare_paired(wrong, right, 200, 0.95, 0).as_dict(0.05)},
        "C − A": {"average": compare_paired(wrong, wrong, 200, 0.95, 0).as_dict(0.05)},
    }
    accuracy = {name: accuracy_intervals(["natural"] * 30, v, 200, 0.95, 0) for name, v in (("A", wrong), ("B", right))}
    images = {"generated": image_statistics("generated", [{"images": 1, "perception": 0.2, "fidelity": 0.4}])}
    costs = {"generated": {"trained tokens": 10.0}}
    text = study_markdown(accuracy, paired, images, costs, {"seed": 0}, 0.95, "g.html")
    assert "- B − A: distinguishable from noise at α = 0.05 on average." in text
    assert "- C − A: no difference is distinguishable from noise" in text
    assert "| A | 0.000 [0.000, 0.000] (n=30) | 0.000 [0.000, 0.000] (n=30) |" in text
    assert "| generated | the model | 1.000 | 0.200 | 0.400 |" in text
