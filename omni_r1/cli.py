"""``omni-r1``: one subcommand per pipeline stage, plus config inspection.

Every stage command reads params.yaml (``--params``), optionally merges overlays
(``--overlay``), and calls ``omni_r1.stages.<name>.run(cfg, ...)``. DVC stages and Prefect
flows call these same commands. A stage whose module is not built yet says so and exits
with code 2; nothing pretends to succeed.
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
NOT_BUILT_EXIT = 2

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
    try:
        module = importlib.import_module(f"omni_r1.stages.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"omni_r1.stages.{name}":
            raise
        console.print(f"[yellow]stage '{name}' is not built yet[/yellow]")
        raise typer.Exit(NOT_BUILT_EXIT) from err
    return module.run(cfg, **kwargs)


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
    track: Annotated[str | None, typer.Option("--track", "-t", help="Training track: omni_r1 | omni_r1_zero.")] = None,
    step: Annotated[str | None, typer.Option(help="PeRPO step, or 'pesft' for the PeSFT checkpoint.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Hub id or checkpoint folder, evaluated on the released Omni-Bench.")
    ] = None,
    bench: Annotated[
        str | None,
        typer.Option(help="With --model: released Omni-Bench parquet file/folder or hub id (eval.released_bench)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="With --model: the name of its outputs.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
) -> None:
    """Evaluate one checkpoint on the Omni-Bench slices (--track/--step), or any model (--model)."""
    cfg = _load(params, overlay)
    if model is not None:
        from omni_r1.stages.evaluate import run_model

        result = run_model(cfg, model, bench or cfg.eval.released_bench, name)
        typer.echo(json.dumps({k: str(v) for k, v in result.items() if k != "metrics"} | result["metrics"]))
        return
    if track is None or step is None:
        console.print("[red]give --track and --step, or --model[/red]")
        raise typer.Exit(2)
    _run_stage("evaluate", cfg, track=track, step=step)


@app.command("general-bench")
def general_bench(
    model: Annotated[str, typer.Option(help="Hub id or checkpoint folder.")],
    name: Annotated[str | None, typer.Option(help="The name of its outputs.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
) -> None:
    """Table 3's general benchmarks (POPE F1, MME-P/R) of one model, as a Table 3-shaped report."""
    result = _run_stage("general_bench", _load(params, overlay), model=model, label=name)
    typer.echo(json.dumps(result["results"]))


@app.command()
def plan(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Dry run: parameters, memory per rank for each strategy and GPU count, tokens and hours per stage."""
    from omni_r1.planning import plan_text

    typer.echo(plan_text(_load(params, overlay)))


@app.command()
def report(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Tables shaped like the paper's Tables 2 and 4, plots and projections."""
    _run_stage("report", _load(params, overlay))


@app.command()
def promote(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Register the best checkpoint and move the champion alias when it wins."""
    _run_stage("promote", _load(params, overlay))


@app.command()
def serve(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Serve the Prefect deployments (pipeline, scheduled retrain) from this machine."""
    _run_stage("serve", _load(params, overlay))


if __name__ == "__main__":
    app()
