"""PeSFT on HF Trainer: every trainable parameter moves, accumulation is exact, resume is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from omni_r1.model.packing import pack_many
from omni_r1.training.pesft import (
    PROJECTION_FILE,
    PesftModel,
    build_projection,
    build_trainer,
    load_projection,
    loss_history,
    save_projection,
    training_arguments,
    window_mean,
)
from omni_r1.trajectory import BBox, Step, Trajectory, Zoom


def make_sequences(tiny: Any, count: int, seed: int = 0) -> list:
    """Trajectories with an input image and one or two step images, random codes."""
    layout = tiny.layout
    generator = torch.Generator().manual_seed(seed)
    trajectories, codes = [], []
    for index in range(count):
        steps = [Step(rationale=f"Find object {index}.", action=BBox(x=0.1, y=0.2, w=0.3, h=0.4), has_image=True)]
        if index % 2:
            steps.append(Step(rationale="Zoom in.", action=Zoom(x=0.1, y=0.2, w=0.3, h=0.4), has_image=True))
        steps.append(Step(rationale="It is red." * (1 + index % 3)))
        trajectories.append(
            Trajectory(question=f"What colour is object {index}?", input_images=(None,), steps=tuple(steps), final_answer="red")
        )
        n_images = 1 + sum(step.has_image for step in steps)
        codes.append([torch.randint(0, layout.num_codes, (layout.tokens_per_image,), generator=generator) for _ in range(n_images)])
    sequences, dropped = pack_many(trajectories, layout, tiny.tokenizer, codes, max_length=4096)
    assert dropped == 0
    return sequences


def pesft_model(tiny: Any, *, trainable: bool = True, alignment: str = "next_token") -> PesftModel:
    config = tiny.model.config
    projection = build_projection(config.hidden_size, config.vq_config.embed_dim, trainable=trainable, seed=0)
    return PesftModel(tiny.model, projection, tiny.layout, perception_weight=1.0, alignment=alignment)


def make_trainer(cfg: Any, tiny: Any, model: PesftModel, sequences: list, out: Path, callbacks=(), **overrides: Any):
    section = cfg.pesft.model_copy(update={
        "max_steps": overrides.pop("max_steps", 4),
        "per_device_batch_size": overrides.pop("batch", 2),
        "gradient_accumulation_steps": overrides.pop("accumulation", 1),
        "learning_rate": overrides.pop("lr", 1e-2),
        "warmup_steps": 0,
        "save_steps": overrides.pop("save_steps", 1000),
        "lr_scheduler": "linear",
    })  # fmt: skip
    args = training_arguments(
        section, out, device="cpu", seed=0, progress_bar=False,
        wrap_classes=overrides.pop("wrap_classes", ()), **overrides,
    )  # fmt: skip
    return build_trainer(model, sequences, args, pad_id=tiny.layout.pad_id, tokenizer=tiny.tokenizer, callbacks=callbacks)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("trainable", [True, False])
def test_smoke_every_trainable_parameter_changes_and_loss_falls(cfg, tiny_builder, tmp_path, trainable) -> None:
    tiny = tiny_builder(seed=0)
    model = pesft_model(tiny, trainable=trainable)
    sequences = make_sequences(tiny, 4)
    before = snapshot(model)
    trainer = make_trainer(cfg, tiny, model, sequences, tmp_path, max_steps=8, batch=4, lr=1e-2)
    trainer.train()

    after = snapshot(model)
    trainable_names = {name for name, p in model.named_parameters() if p.requires_grad}
    unchanged = [name for name in trainable_names if torch.equal(before[name], after[name])]
    assert not unchanged, f"trainable parameters that did not move: {unchanged}"
    frozen = [name for name in before if name not in trainable_names]
    assert any(name.startswith("model.model.vqmodel.") for name in frozen)  # the VQ model is frozen
    assert all(torch.equal(before[name], after[name]) for name in frozen)
    assert ("projection.weight" in trainable_names) is trainable

    history = loss_history(trainer.state.log_history)
    assert len(history) == 8
    assert history[-1]["cross_entropy"] < history[0]["cross_entropy"]
    assert history[-1]["perception"] < history[0]["perception"] or not trainable
    assert all(row["tokens_per_s"] > 0 and row["grad_norm"] > 0 for row in history)


def test_batch_8_equals_batch_2_times_4_accumulation_steps(cfg, tiny_builder, tmp_path) -> None:
    sequences = make_sequences(tiny_builder(seed=0), 8)  # uneven lengths and image counts
    assert len({len(sequence.image_spans) for sequence in sequences}) > 1
    results = []
    for batch, accumulation in [(8, 1), (2, 4)]:
        tiny = tiny_builder(seed=0)
        model = pesft_model(tiny)
        trainer = make_trainer(
            cfg, tiny, model, sequences, tmp_path / f"b{batch}", max_steps=1,
            batch=batch, accumulation=accumulation, lr=0.5, optim="sgd", max_grad_norm=1e9,
        )  # fmt: skip
        trainer.train()
        results.append((snapshot(model), loss_history(trainer.state.log_history)[0]))
    (big, big_log), (small, small_log) = results
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
    assert small_log["cross_entropy"] == pytest.approx(big_log["cross_entropy"], rel=1e-5)
    assert small_log["perception"] == pytest.approx(big_log["perception"], rel=1e-5)


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_equals_uninterrupted_run(cfg, tiny_builder, tmp_path) -> None:
    sequences = make_sequences(tiny_builder(seed=0), 6)

    tiny = tiny_builder(seed=0)
    straight = pesft_model(tiny)
    make_trainer(cfg, tiny, straight, sequences, tmp_path / "straight", max_steps=4, batch=2).train()

    tiny = tiny_builder(seed=0)
    stopped = pesft_model(tiny)
    make_trainer(cfg, tiny, stopped, sequences, tmp_path / "resumed", max_steps=4, batch=2, save_steps=2,
                 callbacks=[StopAt(2)]).train()  # fmt: skip
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists()

    tiny = tiny_builder(seed=1)  # different weights: everything must come from the checkpoint
    resumed = pesft_model(tiny)
    trainer = make_trainer(cfg, tiny, resumed, sequences, tmp_path / "resumed", max_steps=4, batch=2, save_steps=2)
    trainer.train(resume_from_checkpoint=str(checkpoint))

    assert trainer.state.global_step == 4
    expected, actual = snapshot(straight), snapshot(resumed)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert [row["step"] for row in loss_history(trainer.state.log_history)] == [1, 2, 3, 4]


def test_projection_file_round_trip(tmp_path) -> None:
    projection = build_projection(16, 8, trainable=True, seed=3)
    path = save_projection(projection, tmp_path)
    assert path.name == PROJECTION_FILE
    loaded = load_projection(tmp_path, trainable=False)
    assert torch.equal(loaded.weight, projection.weight) and torch.equal(loaded.bias, projection.bias)
    assert not loaded.weight.requires_grad
    assert torch.equal(build_projection(16, 8, trainable=True, seed=3).weight, projection.weight)  # seeded


def test_window_mean_first_and_last() -> None:
    rows = [{"cross_entropy": float(value)} for value in [4, 2, 1, 1]]
    assert window_mean(rows, "cross_entropy", 2, last=False) == 3.0
    assert window_mean(rows, "cross_entropy", 2, last=True) == 1.0


def tree_digests(root: Path, pattern: str = "**/*") -> dict[str, str]:
    """sha256 of every file under ``root`` matching ``pattern``, by path."""
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern)) if p.is_file()}


def write_dataset(records: list, root: Path, name: str, omni: Any, encoded_root: Path) -> None:
    from omni_r1.data.codes import encode_dataset
    from omni_r1.data.storage import write_records
    from omni_r1.model.images import encode_images

    write_records(records, root / name, shard_size=len(records))
    encode_dataset(root / name, encoded_root / name, lambda images: encode_images(omni, images), {"key": "test"})


@pytest.mark.slow
def test_bootstrap_then_pesft_stages_end_to_end(cfg, tmp_path, mlflow_tmp, monkeypatch) -> None:
    """Stages on a tiny saved model: text CoT → bootstrap → PeSFT (Zero track) → checkpoint."""
    import json

    import mlflow
    from tiny_models import build_tiny_for_tests

    from omni_r1.data.storage import read_records
    from omni_r1.data.synthetic import generate
    from omni_r1.model.loading import load_omni
    from omni_r1.model.tiny import save_tiny
    from omni_r1.stages import bootstrap as bootstrap_stage
    from omni_r1.stages import pesft as pesft_stage
    from omni_r1.training.pesft import load_projection

    monkeypatch.chdir(tmp_path)
    omni = build_tiny_for_tests(seed=0)
    save_tiny(omni, tmp_path / "models/tiny")
    cfg = cfg.model_copy(update={
        "run": cfg.run.model_copy(update={"device": "cpu"}),
        "model": cfg.model.model_copy(update={"source": "tiny", "local_dir": str(tmp_path / "models/tiny")}),
        "base": cfg.base.model_copy(update={"out_dir": str(tmp_path / "models/tiny")}),  # start from it (base stage in test_base)
        "generation": cfg.generation.model_copy(update={"max_new_tokens": 48}),
        "bootstrap": cfg.bootstrap.model_copy(update={"max_records": 3, "batch_size": 2}),
        "pesft": cfg.pesft.model_copy(update={
            "max_steps": 3, "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "save_steps": 2,
            "parse_eval_prompts": 2, "loss_window": 2,
        }),
    })  # fmt: skip
    train = list(generate("train", 1, cfg))
    text_cot = [record.model_copy(update={"steps": []}) for record in train]
    write_dataset(text_cot, Path(cfg.data.prepared_dir), cfg.bootstrap.source, omni, Path(cfg.data.encoded_dir))
    write_dataset(list(generate("omnibench", 1, cfg)), Path(cfg.data.prepared_dir), "omnibench", omni, Path(cfg.data.encoded_dir))

    summary = bootstrap_stage.run(cfg)
    zero = list(read_records(Path(cfg.data.prepared_dir) / "zero_bootstrap"))
    assert summary["total"] == len(zero) == 3
    assert all(len(r.steps) == len(r.text_cot) and all(s.image is not None for s in r.steps) for r in zero)
    assert json.loads(Path("metrics/data_zero_bootstrap.json").read_text())["total"] == 3
    assert summary["encoded_images"] == sum(len(r.input_images) + len(r.steps) for r in zero)

    metrics = pesft_stage.run(cfg, track="omni_r1_zero")
    written = json.loads(Path("metrics/pesft_omni_r1_zero.json").read_text())
    assert written["steps"] == metrics["steps"] == 3
    assert {"ce_first", "ce_last", "perception_first", "perception_last", "parse_rate",
            "dropped_sequences"} <= written.keys()  # fmt: skip
    assert not {"tokens_per_s", "train_seconds"} & written.keys()  # timings go to MLflow only
    assert 0.0 <= written["parse_rate"] <= 1.0 and written["parse_eval_prompts"] == 2

    out = Path("checkpoints/omni_r1_zero/pesft")
    loaded = load_omni(cfg, model_dir=out)
    assert loaded.vq_decoder is not None
    assert load_projection(out, trainable=True).weight.shape == (loaded.model.config.vq_config.embed_dim, loaded.model.config.hidden_size)
    assert not Path("checkpoints/omni_r1_zero/pesft_resume").exists()  # cleared after success

    state = json.loads((out / "trainer_state.json").read_text())
    assert state["log_history"] and not any("train_runtime" in row or "tokens_per_s" in row for row in state["log_history"])

    # Same inputs, same seed: the DVC-tracked outputs are byte-identical on a second run.
    first = tree_digests(out) | tree_digests(Path("metrics"), "pesft_*.json")
    pesft_stage.run(cfg, track="omni_r1_zero")
    assert tree_digests(out) | tree_digests(Path("metrics"), "pesft_*.json") == first

    runs = mlflow.search_runs(experiment_names=[cfg.tracking.experiment])
    pesft_run = runs[runs["tags.mlflow.runName"] == "pesft-omni_r1_zero"].iloc[0]
    assert pesft_run["metrics.pesft/cross_entropy"] > 0
    assert pesft_run["metrics.pesft.train_seconds"] > 0
    assert (runs["tags.mlflow.runName"] == "bootstrap").any()
    client = mlflow.MlflowClient()

    def inputs(run_name: str) -> set[tuple[str, str]]:
        run_id = runs[runs["tags.mlflow.runName"] == run_name].iloc[0]["run_id"]
        logged = client.get_run(run_id).inputs.dataset_inputs
        return {(d.dataset.name, d.tags[0].value) for d in logged}

    assert inputs("bootstrap") == {(cfg.bootstrap.source, "bootstrap_source"), ("zero_bootstrap", "bootstrap")}
    assert inputs("pesft-omni_r1_zero") == {("zero_bootstrap", "training"), ("omnibench", "evaluation")}


def test_strategy_arguments_reach_trainer(cfg, tiny_builder, tmp_path) -> None:
    from omni_r1.training.pesft import (
        decoder_layer_classes,
        deepspeed_zero2_config,
        strategy_arguments,
    )

    tiny = tiny_builder(seed=0)
    wrap = decoder_layer_classes(tiny.model)
    assert wrap == ("ChameleonDecoderLayer",)
    assert strategy_arguments("ddp", wrap, False) == {}
    section = cfg.pesft.model_copy(update={"strategy": "fsdp", "gradient_checkpointing": True})
    args = training_arguments(section, tmp_path, device="cpu", seed=0, progress_bar=False, wrap_classes=wrap)
    plugin = args.fsdp_plugin_args  # what Trainer hands Accelerate's FSDP plugin
    assert args.fsdp and plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True
    assert plugin["transformer_cls_names_to_wrap"] == "ChameleonDecoderLayer"
    assert plugin["activation_checkpointing"] is True and not args.gradient_checkpointing
    zero2 = deepspeed_zero2_config()
    assert zero2["zero_optimization"]["stage"] == 2
    # every batch/clip/precision value is left to the integration, so pesft.* stays their only home
    assert {zero2[k] for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")} == {"auto"}
    with pytest.raises(ValueError, match="unknown pesft.strategy 'zero3'"):
        strategy_arguments("zero3", wrap, False)


def test_precision_switch() -> None:
    from omni_r1.training.pesft import use_bf16

    assert use_bf16("bf16", cuda=False) is True and use_bf16("fp32", cuda=True) is False
    assert use_bf16("auto", cuda=False) is False


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(cfg, tiny_builder) -> None:
    from omni_r1.model.packing import collate
    from omni_r1.training.pesft import count_image_items, enable_gradient_checkpointing

    grads = []
    for enabled in (False, True):
        tiny = tiny_builder(seed=0)
        model = pesft_model(tiny).train()
        enable_gradient_checkpointing(model, "ddp", enabled)
        assert model.model.is_gradient_checkpointing is enabled
        batch = collate(make_sequences(tiny, 2), tiny.layout.pad_id)
        out = model(batch["input_ids"], batch["attention_mask"], batch["labels"],
                    num_image_items_in_batch=count_image_items([batch]))  # fmt: skip
        out.loss.backward()
        grads.append((out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_a, grad_a), (loss_b, grad_b) = grads
    assert torch.allclose(loss_a, loss_b) and grad_a.keys() == grad_b.keys()
    assert all(torch.allclose(grad_a[n], grad_b[n], atol=1e-6) for n in grad_a)
