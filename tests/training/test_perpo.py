"""PeRPO local engine on a tiny random Chameleon: rollouts, group filter with refill, update.

Rewards are constructed per prompt (a scorer injected into the trainer) so that some
groups are uniform and others mixed, which makes the filter's bookkeeping checkable; one
test runs the real reward (score_batch) end to end.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from omni_r1.data.records import Record, RecordStep, to_png
from omni_r1.rewards.registry import RewardBatch
from omni_r1.training.perpo import PerpoTrainer
from omni_r1.training.perpo_report import rollout_gallery_html, summary_metrics
from omni_r1.training.rollout import (
    PromptCursor,
    Response,
    build_prompts,
    collate_responses,
)

NUM_PROMPTS = 6



def make_records(count: int, mixed: set[int]) -> list[Record]:
    """Records whose gold answer says whether the test scorer makes its group mixed."""
    png = to_png(Image.new("RGB", (32, 32), (200, 30, 30)))
    return [
        Record(
            id=f"rec{i}",
            source="test",
            uni_task="natural",
            skills=[],
            question=f"Question {i}?",
            choices=[],
            input_images=[png],
            steps=[RecordStep(rationale="look")],
            final_answer=("mixed" if i in mixed else "uniform"),
            answer_type="text",
        )  # fmt: skip
        for i in range(count)
    ]


def input_codes(
    records: list[Record], num_codes: int, tokens: int
) -> dict[tuple[str, str], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        (r.id, "input_0"): torch.randint(0, num_codes, (tokens,), generator=generator)
        for r in records
    }


class GroupScorer:
    """Uniform reward 0.5 for "uniform" prompts; 0/1 alternating inside "mixed" groups. Records calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts, owners, response_ids, response_mask) -> RewardBatch:
        self.calls.append([owner.record_id for owner in owners])
        rewards = [
            0.5 if owner.gold == "uniform" else float(row % 2) for row, owner in enumerate(owners)
        ]
        reward = torch.tensor(rewards)
        nan = torch.full_like(reward, math.nan)
        return RewardBatch(
            reward,
            reward,
            torch.ones_like(reward),
            nan,
            torch.zeros_like(reward, dtype=torch.bool),
            [""] * len(rewards),
        )


def perpo_cfg(cfg, **perpo):
    base = {
        "max_new_tokens": 24,
        "rollout_n": 4,
        "gen_batch_size": 2,
        "train_batch_size": 2,
        "max_gen_batches": 3,
        "ppo_mini_batch_size": 1,
        "micro_batch_size": 4,
        "rollout_batch_size": 4,
        "warmup_steps": 0,
        "probe_prompts": 0,
    }
    return cfg.model_copy(update={"perpo": cfg.perpo.model_copy(update={**base, **perpo})})


def make_trainer(tiny_builder, cfg, mixed: set[int], scorer=None):
    policy = tiny_builder(seed=0)
    reference = tiny_builder(seed=0)
    records = make_records(NUM_PROMPTS, mixed)
    codes = input_codes(records, policy.layout.num_codes, policy.layout.tokens_per_image)
    prompts = build_prompts(records, codes, policy.layout, policy.tokenizer, source="test")
    trainer = PerpoTrainer(
        policy.model, reference.model, policy.tokenizer, policy.layout, prompts, cfg,
        write_model=lambda folder: policy.model.save_pretrained(folder), scorer=scorer,
    )  # fmt: skip
    return trainer, prompts


def test_filter_drops_uniform_groups_refills_and_updates(tiny_builder, cfg):
    cfg = perpo_cfg(cfg)
    mixed = {1, 4}
    scorer = GroupScorer()
    trainer, prompts = make_trainer(tiny_builder, cfg, mixed, scorer)
    before = {name: p.detach().clone() for name, p in trainer.policy.named_parameters()}

    metrics = trainer.step()

    # which prompts each generation batch drew, and how many mixed groups that yields
    expected_batches, kept_so_far = 0, 0
    for call in scorer.calls:
        assert len(call) == cfg.perpo.gen_batch_size * cfg.perpo.rollout_n
        expected_batches += 1
        kept_so_far += sum(1 for rid in dict.fromkeys(call) if rid in {f"rec{i}" for i in mixed})
    assert metrics["filter/gen_batches"] == len(scorer.calls) == expected_batches
    if kept_so_far < cfg.perpo.train_batch_size:
        assert expected_batches == cfg.perpo.max_gen_batches  # refilled up to the limit
    else:
        assert (
            kept_so_far - cfg.perpo.train_batch_size < cfg.perpo.gen_batch_size
        )  # stopped once full
    kept = trainer.last_kept
    assert (
        metrics["filter/kept_groups"]
        == len(kept)
        == min(kept_so_far, cfg.perpo.train_batch_size)
        > 0
    )
    for group in kept:
        assert len(group) == cfg.perpo.rollout_n
        assert all(prompts[r.prompt_index].gold == "mixed" for r in group)
        assert len({r.reward for r in group}) > 1
    expected_fraction = kept_so_far / (expected_batches * cfg.perpo.gen_batch_size)
    assert metrics["filter/kept_group_fraction"] == pytest.approx(expected_fraction)

    assert math.isfinite(metrics["actor/loss"]) and math.isfinite(metrics["actor/pg_loss"])
    trainable = [name for name, p in trainer.policy.named_parameters() if p.requires_grad]
    unchanged = [
        name for name, p in trainer.policy.named_parameters() if torch.equal(p, before[name])
    ]
    assert trainable and not set(trainable) & set(unchanged)  # every trainable parameter moved
    assert all(name.startswith("model.vqmodel.") for name in unchanged)  # the frozen tokenizer
    for key in (
        "reward/mean",
        "reward/accuracy",
        "reward/format",
        "reward/perception",
        "actor/kl_loss",
        "actor/entropy",
        "actor/pg_clipfrac",
        "response/length",
        "response/images",
        "perf/tokens_per_s",
    ):
        assert key in metrics


def test_all_uniform_groups_skip_the_update_after_max_batches(tiny_builder, cfg):
    cfg = perpo_cfg(cfg, max_gen_batches=2)
    scorer = GroupScorer()
    trainer, _ = make_trainer(tiny_builder, cfg, mixed=set(), scorer=scorer)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics = trainer.step()
    assert len(scorer.calls) == 2 and metrics["filter/gen_batches"] == 2
    assert metrics["filter/kept_groups"] == 0 and metrics["filter/skipped_update"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters(), strict=True))
    assert "actor/loss" not in metrics


def test_real_reward_rollouts_are_grouped_and_scored(tiny_builder, cfg):
    cfg = perpo_cfg(cfg, max_gen_batches=1, gen_batch_size=2)
    trainer, prompts = make_trainer(tiny_builder, cfg, mixed=set())
    metrics = trainer.step()
    responses = trainer.last_responses
    assert len(responses) == 2 * cfg.perpo.rollout_n
    groups = [r.group for r in responses]
    assert groups == sorted(groups) and len(set(groups)) == 2
    for response in responses:
        assert 1 <= response.response_ids.shape[0] <= cfg.perpo.max_new_tokens
        assert 0.0 <= response.reward <= 1.0 and response.format in (0.0, 1.0)
        assert response.has_image == (response.image_codes.shape[0] > 0)
        assert torch.equal(response.prompt_ids, prompts[response.prompt_index].prompt_ids)
    assert metrics["reward/mean"] == pytest.approx(
        sum(r.reward for r in responses) / len(responses)
    )
    assert summary_metrics(trainer.history, trainer.probes, cfg.perpo.reward_window)["reward_step0"] == pytest.approx(
        metrics["reward/mean"], abs=1e-6
    )


def test_collated_batch_puts_responses_after_left_padded_prompts(tiny_builder, cfg):
    cfg = perpo_cfg(cfg, max_gen_batches=1)
    trainer, _ = make_trainer(tiny_builder, cfg, mixed={0, 1, 2, 3, 4, 5}, scorer=GroupScorer())
    trainer.step()
    responses = [r for group in trainer.last_kept for r in group]
    batch = collate_responses(responses, pad_id=trainer.layout.pad_id)
    for row, response in enumerate(responses):
        n = response.response_ids.shape[0]
        assert torch.equal(
            batch.input_ids[row, batch.prompt_width : batch.prompt_width + n], response.response_ids
        )
        assert batch.response_mask[row].sum() == n
        p = response.prompt_ids.shape[0]
        assert torch.equal(
            batch.input_ids[row, batch.prompt_width - p : batch.prompt_width], response.prompt_ids
        )
        assert batch.attention_mask[row, : batch.prompt_width - p].sum() == 0


def one_response_rollout(tiny_builder, text: str, images: int, format_reward: float):
    """The prompts of one record and one scored response to it with ``images`` zero-code images."""
    tiny = tiny_builder(seed=0)
    records = make_records(1, mixed=set())
    codes = input_codes(records, tiny.layout.num_codes, tiny.layout.tokens_per_image)
    prompts = build_prompts(records, codes, tiny.layout, tiny.tokenizer, source="test")
    response = Response(
        prompt_index=0, group=0, prompt_ids=prompts[0].prompt_ids, response_ids=torch.tensor([2]), text=text,
        image_codes=torch.zeros(images, tiny.layout.tokens_per_image, dtype=torch.long),
        reward=0.25, accuracy=0.0, format=format_reward, perception=0.5, has_image=True,
    )  # fmt: skip
    return tiny, prompts, response


def test_gallery_shows_decoded_step_images_and_the_reward(tiny_builder):
    tiny, prompts, response = one_response_rollout(
        tiny_builder, "THOUGHT 1: look closer\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n<image>\nFinal Answer: 3", 1, 1.0
    )
    decoded: list[torch.Tensor] = []

    def decode(codes: torch.Tensor) -> list[Image.Image]:
        decoded.append(codes)
        return [Image.new("RGB", (8, 8), (0, 0, 255)) for _ in range(codes.shape[0])]

    html = rollout_gallery_html([response], prompts, decode, limit=4, title="step 10")
    assert len(decoded) == 1 and decoded[0].shape == (1, tiny.layout.tokens_per_image)
    assert html.count("<img") == 2  # the input image and the decoded step image
    assert "ZOOM(0.1, 0.1, 0.5, 0.5)" in html and "R=0.250" in html and "uniform" in html
    assert rollout_gallery_html([response], prompts, None, 4, "t").count("<img") == 1


def test_gallery_keeps_an_image_drawn_outside_any_step(tiny_builder):
    """Two decoded images, one image slot: both images are shown, as the evaluation gallery does."""
    _, prompts, response = one_response_rollout(
        tiny_builder, "<image>\nTHOUGHT 1: look closer\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n<image>\nFinal Answer: 3", 2, 0.0
    )

    def decode(codes: torch.Tensor) -> list[Image.Image]:
        return [Image.new("RGB", (8, 8), (0, 0, 40 * i)) for i in range(codes.shape[0])]

    html = rollout_gallery_html([response], prompts, decode, limit=4, title="t")
    assert html.count('alt="step') == 2 and html.count("<img") == 3
    assert "(image outside any step)" in html


def test_probes_score_start_and_end_without_changing_the_run(tiny_builder, cfg, tmp_path):
    cfg = perpo_cfg(cfg, max_gen_batches=1, learning_rate=0.05)
    cfg = cfg.model_copy(
        update={"reward": cfg.reward.model_copy(update={"perception_weight": 0.5})}
    )
    probed_cfg = cfg.model_copy(update={"perpo": cfg.perpo.model_copy(update={"probe_prompts": 3})})
    torch.manual_seed(5)
    probed, _ = make_trainer(tiny_builder, probed_cfg, mixed=set())
    probe_progress: list[tuple[str, int, int]] = []
    probed.train(2, tmp_path / "a", save_steps=[], on_probe=lambda *done: probe_progress.append(done))
    torch.manual_seed(5)
    plain, _ = make_trainer(tiny_builder, cfg, mixed=set())
    plain.train(2, tmp_path / "b", save_steps=[])

    keys = ("reward/mean", "response/length", "filter/kept_groups")
    assert [[h[k] for k in keys] for h in probed.history] == [
        [h[k] for k in keys] for h in plain.history
    ]
    for a, b in zip(probed.policy.parameters(), plain.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert set(probed.probes) == {"start", "end"} and not plain.probes
    assert probe_progress[-1] == ("end", 3, 3) and ("start", 3, 3) in probe_progress
    fresh, _ = make_trainer(tiny_builder, probed_cfg, mixed=set())
    start_again = fresh.probe()
    for key in ("reward/mean", "reward/format", "response/length", "response/images"):
        assert start_again[key] == probed.probes["start"][key]
    summary = summary_metrics(probed.history, probed.probes, cfg.perpo.reward_window)
    assert summary["source"] == "probe" and summary["steps"] == 2
    assert summary["reward_step0"] == pytest.approx(probed.probes["start"]["reward/mean"], abs=1e-6)
    assert summary["reward_last"] == pytest.approx(probed.probes["end"]["reward/mean"], abs=1e-6)
    assert summary_metrics(plain.history, plain.probes, cfg.perpo.reward_window)["source"] == "training_rollouts"


@pytest.mark.slow
def test_stage_writes_checkpoints_metrics_gallery_and_resumes(
    cfg, tmp_path, mlflow_tmp, monkeypatch
):
    from mlflow.tracking import MlflowClient
    from tiny_models import build_tiny_for_tests

    from omni_r1.data.codes import encode_dataset
    from omni_r1.data.storage import write_records
    from omni_r1.model.images import encode_images
    from omni_r1.model.loading import load_omni
    from omni_r1.model.tiny import save_tiny
    from omni_r1.stages import perpo as stage

    monkeypatch.chdir(tmp_path)
    omni = build_tiny_for_tests(seed=0)
    save_tiny(omni, "checkpoints/omni_r1/pesft")
    write_records(make_records(4, mixed=set()), "data/prepared/perpo_train", name="perpo_train", shard_size=4)
    key = {"tokenizer_hash": "test", "manifest_sha256": "test"}
    encode_dataset(
        "data/prepared/perpo_train",
        "data/encoded/perpo_train",
        lambda im: encode_images(omni, im),
        key,
    )
    cfg = perpo_cfg(cfg, max_steps=2, save_steps=[1, 2], max_gen_batches=1, learning_rate=0.05, probe_prompts=2,
                    gallery_examples=2)  # fmt: skip
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"device": "cpu"})})

    summary = stage.run(cfg, track="omni_r1")

    assert [p.name for p in sorted(Path("checkpoints/omni_r1/perpo").iterdir())] == [
        "step_1",
        "step_2",
    ]
    trained = load_omni(cfg, model_dir="checkpoints/omni_r1/perpo/step_2")
    assert trained.layout == omni.layout and trained.vq_decoder is not None
    written = json.loads(Path("metrics/perpo_omni_r1.json").read_text())
    for name in (
        "reward_step0",
        "reward_last",
        "accuracy_step0",
        "accuracy_last",
        "kept_group_fraction",
    ):
        assert name in written
    assert written["steps"] == 2 and written["source"] == "probe" and written == summary
    client = MlflowClient(mlflow_tmp)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    assert len(client.get_metric_history(run.info.run_id, "reward/mean")) == 2
    assert "perpo/gallery_step_2.html" in {
        a.path for a in client.list_artifacts(run.info.run_id, "perpo")
    }

    again = stage.run(cfg, track="omni_r1")  # resumes at the last checkpoint: nothing left to train
    assert again["steps"] == 2 and again["reward_step0"] == summary["reward_step0"]

    # A fresh run on the same inputs writes byte-identical DVC outputs (no timings in them).
    def digests() -> dict[str, str]:
        files = [*sorted(Path("checkpoints/omni_r1/perpo").rglob("*")), Path("metrics/perpo_omni_r1.json")]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}

    first = digests()
    state = json.loads(Path("checkpoints/omni_r1/perpo/step_2/trainer_state.json").read_text())
    assert state["extra"]["history"] and not any(
        key.startswith("perf/") for entry in state["extra"]["history"] for key in entry
    )
    shutil.rmtree("checkpoints/omni_r1/perpo")
    stage.run(cfg, track="omni_r1")
    assert digests() == first

    ablation = stage.VARIANTS["no_perception"](cfg)
    assert ablation.reward.perception_weight == 0.0 and cfg.reward.perception_weight > 0
    start, out, metrics = stage.output_paths(cfg, "omni_r1_zero", "no_perception")
    assert (str(start), str(out), str(metrics)) == (
        "checkpoints/omni_r1_zero/pesft", "checkpoints/omni_r1_zero/perpo_no_perception",
        "metrics/perpo_no_perception.json",
    )  # fmt: skip


def test_only_a_same_fingerprint_checkpoint_is_resumed(tmp_path):
    from omni_r1.stages.perpo import resumable_checkpoint

    folder = tmp_path / "perpo" / "step_10"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(
        json.dumps({"step": 10, "extra": {"fingerprint": "aaa"}})
    )
    assert resumable_checkpoint(tmp_path / "perpo", "aaa") == folder
    assert resumable_checkpoint(tmp_path / "perpo", "bbb") is None
    assert not (
        tmp_path / "perpo"
    ).exists()  # stale checkpoints of another configuration are removed
    assert resumable_checkpoint(tmp_path / "perpo", "aaa") is None


def test_batches_sampled_ahead_use_the_same_prompts_and_return_the_unused_ones(tiny_builder, cfg):
    # one batch per call vs three batches per call: the DAPO rule (stop at the first batch that
    # fills the train batch) decides the same prompts, groups and cursor position
    order = PromptCursor(NUM_PROMPTS, cfg.run.seed).take(NUM_PROMPTS)
    mixed = {order[0], order[2]}  # batch 1 keeps one group, batch 2 fills the train batch of 2
    outcomes = []
    for rollout_batch_size in (8, 24):  # gen_batch_size 2 x rollout_n 4 = 8 rows per batch
        step_cfg = perpo_cfg(cfg, rollout_batch_size=rollout_batch_size)
        scorer = GroupScorer()
        trainer, prompts = make_trainer(tiny_builder, step_cfg, mixed, scorer)
        kept, found, generated, batches, _ = trainer.collect()
        assert [len(call) for call in scorer.calls] == ([8, 8] if rollout_batch_size == 8 else [24])
        outcomes.append((
            [[prompts[r.prompt_index].record_id for r in group][0] for group in kept],
            sorted({r.group for group in kept for r in group}), found, batches,
            sorted(r.prompt_index for r in generated), trainer.cursor.position,
        ))  # fmt: skip
    one_at_a_time, ahead = outcomes
    assert ahead == one_at_a_time
    assert one_at_a_time[3] == 2 and one_at_a_time[5] == 4  # batch 3's prompts went back
