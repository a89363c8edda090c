"""The dry-run planner: Anole-7B's parameter count on the meta device, memory arithmetic, CLI."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from omni_r1 import cli
from omni_r1.config import load_config
from omni_r1.planning import (
    ModelShape,
    activation_bytes,
    chameleon_config,
    model_shape,
    state_bytes,
    tokens_per_step,
)


def test_paper_model_is_anole_7b(repo_root: Path) -> None:
    cfg = load_config(repo_root / "params.yaml", (repo_root / "params" / "paper.yaml",))
    shape = model_shape(chameleon_config(cfg))
    # Chameleon-7B by hand: embeddings + LM head 2·65536·4096; per layer 4·4096² attention
    # + 3·4096·11008 MLP + 2·4096 norms + q/k layer norms 2·(32·128·2); final norm 4096.
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096 + 2 * 2 * 32 * 128
    decoder = 2 * 65536 * 4096 + 32 * layer + 4096
    assert shape.largest_unit == layer
    assert shape.parameters - decoder == 29_423_616  # the VQ model (frozen), all that is left
    assert round(shape.parameters / 1e9, 2) == 7.04


def test_memory_per_rank_by_hand() -> None:
    shape = ModelShape(parameters=100, trainable=90, largest_unit=10, hidden_size=4, layers=2, vocab_size=8)
    assert state_bytes(shape, "ddp", 2) == 10 * 2 + 90 * 16
    assert state_bytes(shape, "deepspeed_zero2", 2) == 10 * 2 + 90 * 2 + 90 * 14 / 2
    assert state_bytes(shape, "fsdp", 2) == (10 * 2 + 90 * 16) / 2 + 2 * 10 * 2
    # 3 tokens: no checkpointing 34·3·4 per layer x 2; with it 2·3·4·2 + 34·3·4; logits 2·4·3·8 both
    assert activation_bytes(shape, 3, False) == 34 * 3 * 4 * 2 + 2 * 4 * 3 * 8
    assert activation_bytes(shape, 3, True) == 2 * 3 * 4 * 2 + 34 * 3 * 4 + 2 * 4 * 3 * 8


def test_tokens_per_step_follow_the_batch_settings(repo_root: Path) -> None:
    cfg = load_config(repo_root / "params.yaml", (repo_root / "params" / "paper.yaml",))
    tokens = tokens_per_step(cfg, 8)
    assert tokens["pesft"] == 1 * 1 * 8 * 5100
    assert tokens["perpo_generated"] == 192 * 16 * 4096 and tokens["perpo_trained"] == 64 * 16 * 4096


def test_plan_command_prints_the_paper_plan(repo_root: Path) -> None:
    result = CliRunner().invoke(cli.app, [
        "plan", "--params", str(repo_root / "params.yaml"), "--overlay", str(repo_root / "params" / "paper.yaml")])
    assert result.exit_code == 0, result.output
    assert "parameters: 7,043,090,432 (7.04 B)" in result.output
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in result.output.splitlines()
            if line.startswith("| ddp") or line.startswith("| fsdp")}
    assert rows[("ddp", "8")].rstrip().endswith("| no |")  # 16 B/param does not fit 80 GiB
    assert rows[("fsdp", "8")].rstrip().endswith("| yes |")
