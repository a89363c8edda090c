"""``omni-r1``: one subcommand per pipeline stage, plus config inspection.

Every stage command reads params.yaml (``--params``), optionally merges overlays
(``--overlay``), and calls ``omni_r1.stages.<name>.run(cfg, ...)``. DVC stages and Prefect
flows call these same commands. Serving the Prefect deployments is not a stage: it lives
with the flows (``python -m flows.serve``), so the library never imports Prefect.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from omni_r1.config import Config, ConfigError, dvc_set_params, load_config

app = typer.Typer(
    name="omni-r1",
    help="Omni-R1 pipeline: interleaved text-and-image reasoning with PeSFT and PeRPO.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and validate params.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console(stderr=True)

ParamsOpt = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file.", dir_okay=False)
]
OverlayOpt = Annotated[
    list[Path] | None,
    typer.Option("--overlay", "-o", help="Overlay merged on top of --params (repeatable)."),
]
TrackOpt = Annotated[str, typer.Option("--track", "-t", help="Training track: omni_r1 | omni_r1_zero.")]


def _load(params: Path, overlay: list[Path] | None) -> Config:
    try:
        return load_config(params, tuple(overlay or ()))
    except ConfigError as err:
        console.print(f"[red]invalid configuration[/red]\n{err}", highlight=False)
        raise typer.Exit(1) from err


def _run_stage(name: str, cfg: Config, **kwargs: Any) -> Any:
    """Import ``omni_r1.stages.<name>`` on demand (``--help`` stays fast) and run it."""
    return importlib.import_module(f"omni_r1.stages.{name}").run(cfg, **kwargs)


@config_app.command("show")
def config_show(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Print the resolved configuration as YAML."""
    cfg = _load(params, overlay)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of params.yaml."""
    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


@config_app.command("dvc-args")
def config_dvc_args(overlay: Annotated[Path, typer.Argument(help="Overlay file.")]) -> None:
    """Print an overlay as `-S key=value` arguments for `dvc exp run`."""
    try:
        args = dvc_set_params(overlay)
    except ConfigError as err:
        console.print(f"[red]{err}[/red]", highlight=False)
        raise typer.Exit(1) from err
    typer.echo(" ".join(f"'{a}'" if a != "-S" else a for a in args))


@app.command()
def gallery(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Render example trajectories through the action executor into an HTML page."""
    _run_stage("gallery", _load(params, overlay))


@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Build the versioned datasets (sources, synthetic Uni-Tasks, Omni-Bench slices)."""
    _run_stage("prepare", _load(params, overlay))


@app.command()
def tokenizer(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Train the tiny text tokenizer and VQ autoencoder, and build the tiny model."""
    _run_stage("tokenizer", _load(params, overlay))


@app.command()
def encode(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Encode dataset images to codebook tokens, cached beside the records."""
    _run_stage("encode", _load(params, overlay))


@app.command()
def bootstrap(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Omni-R1-Zero: generate one image per step of text-only chains of thought."""
    _run_stage("bootstrap", _load(params, overlay))


@app.command()
def pesft(
    track: TrackOpt, params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None
) -> None:
    """Perception-aligned SFT (cross-entropy + perception loss)."""
    _run_stage("pesft", _load(params, overlay), track=track)


@app.command()
def perpo(
    track: TrackOpt,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    variant: Annotated[str, typer.Option(help="Run variant, e.g. no_perception.")] = "default",
) -> None:
    """Perception-calibrated group-relative PPO with checkpoints."""
    _run_stage("perpo", _load(params, overlay), track=track, variant=variant)


@app.command()
def evaluate(
    track: TrackOpt,
    step: Annotated[str, typer.Option(help="PeRPO step, or 'pesft' for the PeSFT checkpoint.")],
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
) -> None:
    """Evaluate one checkpoint on the Omni-Bench slices."""
    _run_stage("evaluate", _load(params, overlay), track=track, step=step)


@app.command()
def report(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Tables shaped like the paper's Tables 2 and 4, plots and projections."""
    _run_stage("report", _load(params, overlay))


@app.command()
def promote(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Register the best checkpoint and move the champion alias when it wins."""
    _run_stage("promote", _load(params, overlay))


if __name__ == "__main__":
    app()
