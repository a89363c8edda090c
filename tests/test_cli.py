from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from omni_r1 import cli

runner = CliRunner()


def test_help_lists_every_stage() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for stage in ("prepare", "tokenizer", "encode", "bootstrap", "pesft", "perpo", "evaluate",
                  "report", "promote", "config"):
        assert stage in result.output


@pytest.mark.parametrize("command", [["pesft"], ["evaluate"], ["config", "show"], ["gallery"]])
def test_subcommand_help(command: list[str]) -> None:
    result = runner.invoke(cli.app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--params" in result.output


def test_config_show_prints_resolved_yaml(repo_root: Path) -> None:
    result = runner.invoke(cli.app, ["config", "show", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["executor"]["resolution"] == yaml.safe_load(
        (repo_root / "params.yaml").read_text()
    )["executor"]["resolution"]


def test_config_schema_is_json_with_every_section(repo_root: Path) -> None:
    result = runner.invoke(cli.app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    sections = set(yaml.safe_load((repo_root / "params.yaml").read_text()))
    assert sections <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_unknown_key_exits_nonzero_naming_it(repo_root: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["run"]["sede"] = 1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    result = runner.invoke(cli.app, ["config", "show", "--params", str(params)])
    assert result.exit_code == 1
    assert "run.sede" in result.output


def test_dvc_args_from_overlay(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("executor:\n  resolution: 512\n")
    result = runner.invoke(cli.app, ["config", "dvc-args", str(overlay)])
    assert result.exit_code == 0
    assert result.output.strip() == "-S 'executor.resolution=512'"


def test_every_stage_command_names_a_stage_module_with_run() -> None:
    import importlib

    stage_commands = [c.name or c.callback.__name__ for c in cli.app.registered_commands]
    assert stage_commands  # gallery, prepare, ..., promote
    for name in stage_commands:
        module = importlib.import_module(f"omni_r1.stages.{name}")
        assert callable(module.run), name


def test_a_missing_stage_module_is_an_import_error_not_a_skip(cfg) -> None:
    with pytest.raises(ModuleNotFoundError, match="not_a_stage"):
        cli._run_stage("not_a_stage", cfg)
