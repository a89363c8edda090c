"""Base pre-training: the drawing scores by hand, a short training run, the stage on a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omni_r1.data.base_pairs import build_pair_sets
from omni_r1.executor import Executor
from omni_r1.model.images import decode_pixels, encode_images
from omni_r1.model.packing import collate
from omni_r1.training.base import (
    base_training_section,
    drawing_metrics,
    held_out_drawings,
    pack_pairs,
    pair_codes,
    score_drawings,
)
from omni_r1.training.pesft import PesftModel, build_projection, build_trainer, training_arguments

CAP = 50.0


def test_equal_codes_and_pixels_score_one_and_the_cap() -> None:
    codes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    pixels = torch.rand(2, 3, 4, 4) * 2 - 1
    scores = score_drawings(codes, codes.clone(), pixels, pixels.clone(), CAP)
    assert scores.code_accuracy.tolist() == [1.0, 1.0]
    assert scores.psnr_db.tolist() == [CAP, CAP]


def test_partial_codes_and_a_known_pixel_error() -> None:
    # row 0: 2 of 4 codes equal -> 0.5; row 1: none -> 0.0
    generated, target = torch.tensor([[1, 2, 0, 0], [9, 9, 9, 9]]), torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    # pixels in [-1, 1] differ by 0.2 everywhere -> 0.1 in [0, 1] -> MSE 0.01 -> 10·log10(100) = 20 dB
    reference = torch.zeros(2, 3, 4, 4)
    scores = score_drawings(generated, target, reference + 0.2, reference, CAP)
    assert scores.code_accuracy.tolist() == [0.5, 0.0]
    assert torch.allclose(scores.psnr_db, torch.tensor([20.0, 20.0], dtype=torch.float64))


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        score_drawings(torch.zeros(2, 4), torch.zeros(2, 5), torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), CAP)


def mean_loss(model: PesftModel, sequences, pad_id: int) -> float:
    batch = collate(sequences, pad_id)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return float(out.cross_entropy)


def test_short_base_training_lowers_the_loss_on_its_pairs_and_draws(cfg, tmp_path) -> None:
    from tiny_models import build_tiny_for_tests

    from omni_r1.model.loading import load_omni, save_omni

    tiny = build_tiny_for_tests(seed=0)
    train, heldout = build_pair_sets(2, 1, cfg, Executor(cfg.executor), set())
    codes = pair_codes(train.pairs, lambda images: encode_images(tiny, images))
    sequences, dropped = pack_pairs(train.pairs, codes, tiny.layout, tiny.tokenizer, max_length=4096)
    assert dropped == 0 and len(sequences) == len(train.pairs) == 6

    config = tiny.model.config
    projection = build_projection(config.hidden_size, config.vq_config.embed_dim, trainable=True, seed=0)
    model = PesftModel(tiny.model, projection, tiny.layout, perception_weight=1.0, alignment="next_token")
    before = mean_loss(model, sequences, tiny.layout.pad_id)
    base = cfg.base.model_copy(update={"max_steps": 12, "per_device_batch_size": 6, "learning_rate": 1e-2, "warmup_steps": 0})
    args = training_arguments(
        base_training_section(cfg.pesft, base), tmp_path / "trainer", device="cpu", seed=0,
        progress_bar=False, save_strategy="no",
    )  # fmt: skip
    assert (args.max_steps, args.per_device_train_batch_size, args.learning_rate) == (12, 6, 1e-2)
    build_trainer(model, sequences, args, pad_id=tiny.layout.pad_id, tokenizer=tiny.tokenizer).train()
    after = mean_loss(model, sequences, tiny.layout.pad_id)
    assert after < 0.8 * before, (before, after)

    # held-out drawings: 1 draw + 1 action pair, every code scored, PSNR within (0, cap]
    held_codes = pair_codes(heldout.pairs, lambda images: encode_images(tiny, images))
    held = held_out_drawings(heldout.pairs, held_codes, tiny.layout, tiny.tokenizer, 4096, config.vq_config.resolution)
    assert [pair.kind for pair in held.pairs] == ["draw", "action"]
    assert all(int(prefix[-1]) == tiny.layout.boi_id for prefix in held.prefixes)
    vqmodel = tiny.model.model.vqmodel
    metrics, drawn = drawing_metrics(
        tiny.model, tiny.layout, held, lambda c: decode_pixels(tiny.vq_decoder, vqmodel, c), batch_size=2, cap_db=CAP
    )
    assert drawn.shape == (2, tiny.layout.tokens_per_image)
    assert 0.0 <= metrics["code_accuracy"] <= 1.0 and 0.0 < metrics["psnr_db"] <= CAP
    assert metrics["code_accuracy"] == pytest.approx((metrics["draw_code_accuracy"] + metrics["action_code_accuracy"]) / 2)

    # the trained weights round-trip through the load_omni folder
    save_omni(tiny, tmp_path / "base")
    loaded = load_omni(cfg.model_copy(update={"run": cfg.run.model_copy(update={"device": "cpu"})}), model_dir=tmp_path / "base")
    for name, parameter in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], parameter), name


@pytest.mark.slow
def test_base_stage_writes_metrics_gallery_and_the_folder_pesft_starts_from(cfg, tmp_path, mlflow_tmp, monkeypatch) -> None:
    from tiny_models import build_tiny_for_tests

    from omni_r1.data.storage import write_records
    from omni_r1.data.synthetic import generate
    from omni_r1.model.loading import load_base
    from omni_r1.model.tiny import save_tiny
    from omni_r1.stages import base as base_stage

    monkeypatch.chdir(tmp_path)
    save_tiny(build_tiny_for_tests(seed=0), tmp_path / "models/tiny")
    cfg = cfg.model_copy(update={
        "run": cfg.run.model_copy(update={"device": "cpu"}),
        "model": cfg.model.model_copy(update={"source": "tiny", "local_dir": str(tmp_path / "models/tiny")}),
        "base": cfg.base.model_copy(update={
            "train_pairs_per_kind": 2, "heldout_pairs_per_kind": 1, "max_steps": 3, "per_device_batch_size": 2,
            "gallery_examples": 2,
        }),
    })  # fmt: skip
    omnibench = list(generate("omnibench", 1, cfg))
    write_records(omnibench, Path(cfg.data.prepared_dir) / cfg.eval.dataset, shard_size=len(omnibench))

    result = base_stage.run(cfg)
    written = json.loads(Path(cfg.base.metrics_path).read_text())
    assert written == json.loads(json.dumps(result))
    assert written["trained"] and written["steps"] == 3 and written["heldout_drawings"] == 2
    for model in ("base", "untrained"):
        assert {"code_accuracy", "psnr_db", "draw_code_accuracy", "action_psnr_db"} <= written[model].keys()
    page = Path(cfg.base.gallery_path).read_text()
    assert page.count("<img") >= 4  # per drawing pair: the drawing and the renderer's image (+ action inputs)
    assert "base/heldout/draw/" in page and "base/heldout/action/" in page  # kinds alternate
    assert base_stage.alternating_kinds(["draw", "draw", "action", "action", "action"]) == [0, 2, 1, 3, 4]

    base = load_base(cfg)  # what PeSFT and the bootstrap load
    assert base.vq_decoder is not None

    pretrained = cfg.model_copy(update={"model": cfg.model.model_copy(update={"source": "pretrained"})})
    skipped = base_stage.run(pretrained)
    assert skipped["trained"] is False
    assert json.loads(Path(cfg.base.metrics_path).read_text())["trained"] is False
    assert (Path(cfg.base.out_dir) / base_stage.PRETRAINED_MARKER).is_file()
