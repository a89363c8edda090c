"""``omni-r1``: one subcommand per pipeline stage, plus config inspection.

Every stage command reads params.yaml (``--params``), optionally merges overlays
(``--overlay``), and calls ``omni_r1.stages.<name>.run(cfg, ...)``. DVC stages and Prefect
flows call these same commands. Serving the Prefect deployments is not a stage: it lives
with the flows (``python -m flows.serve``), so the library never imports Prefect.

Output: long loops show progress (``omni_r1.console``), each stage ends with one result line
on stdout (``omni_r1.results.result_line``), and ``omni-r1 summary`` prints the closing
summary of a run. Library progress bars and chatter stay quiet unless ``-v`` /
``OMNI_R1_VERBOSE=1`` asks for them.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from omni_r1.config import Config, ConfigError, dvc_set_params, load_config, validate
from omni_r1.console import quiet_libraries, verbose_requested

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


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show library progress bars and INFO logs (or OMNI_R1_VERBOSE=1).")
    ] = False,
) -> None:
    """Omni-R1 pipeline: interleaved text-and-image reasoning with PeSFT and PeRPO."""
    if not verbose_requested(verbose):
        quiet_libraries()


def _run_stage(name: str, cfg: Config, subject: str = "", result_line_at_end: bool = True, **kwargs: Any) -> Any:
    """Import ``omni_r1.stages.<name>`` on demand, run it, and print its result line (unless told not to)."""
    from omni_r1.results import result_line

    module = importlib.import_module(f"omni_r1.stages.{name}")  # on demand: --help stays fast
    started = time.perf_counter()
    result = module.run(cfg, **kwargs)
    if result_line_at_end and isinstance(result, dict):
        typer.echo(result_line(name, result, time.perf_counter() - started, subject))
    return result


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
def base(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Pre-train the tiny base on image <-> text pairs so it can draw (tiny source only)."""
    _run_stage("base", _load(params, overlay))


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
    _run_stage("pesft", _load(params, overlay), subject=track, track=track)


@app.command()
def perpo(
    track: TrackOpt,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
    variant: Annotated[str, typer.Option(help="Run variant, e.g. no_perception.")] = "default",
    engine: Annotated[
        str | None, typer.Option(help="local | verl; overrides perpo.engine of the params.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="verl: write the job's files and print the submit command.")
    ] = False,
    manifest: Annotated[
        Path | None, typer.Option(help="verl: also write the KubeRay RayJob manifest here.")
    ] = None,
) -> None:
    """Perception-calibrated group-relative PPO with checkpoints (local engine or a verl job)."""
    cfg = _load(params, overlay)
    if engine is not None:
        cfg = _with_engine(cfg, engine)
    subject = track if variant == "default" else f"{track} ({variant})"
    _run_stage(
        "perpo", cfg, subject=subject, track=track, variant=variant, dry_run=dry_run, manifest=manifest,
        result_line_at_end=not dry_run,  # a dry run ends with the submit command, ready to copy
    )  # fmt: skip


def _with_engine(cfg: Config, engine: str) -> Config:
    """``cfg`` with ``perpo.engine`` replaced, validated again (the engine's checks included)."""
    data = cfg.model_dump(mode="json")
    data["perpo"]["engine"] = engine
    try:
        return validate(data, source=f"--engine {engine}")
    except ConfigError as err:
        console.print(f"[red]invalid configuration[/red]\n{err}", highlight=False)
        raise typer.Exit(1) from err


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
    _run_stage("evaluate", cfg, subject=f"{track} step {step}", track=track, step=step)


@app.command("general-bench")
def general_bench(
    model: Annotated[str, typer.Option(help="Hub id or checkpoint folder.")],
    name: Annotated[str | None, typer.Option(help="The name of its outputs.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    overlay: OverlayOpt = None,
) -> None:
    """Table 3's general benchmarks (POPE F1, MME-P/R) of one model, as a Table 3-shaped report."""
    result = _run_stage("general_bench", _load(params, overlay), subject=model, model=model, label=name)
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
def study(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Generated vs text-only vs executor-rendered images at equal compute (reports/study.md)."""
    _run_stage("study", _load(params, overlay), result_line_at_end=False)


@app.command()
def promote(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Register the best checkpoint as a servable model; a main-line win moves the champion alias."""
    _run_stage("promote", _load(params, overlay), overlays=tuple(overlay or ()))


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), overlay: OverlayOpt = None) -> None:
    """Print the closing summary of the last run: Omni-Bench, champion, where to look next."""
    from omni_r1.results import closing_summary
    from omni_r1.tracking import tracking_uri

    cfg = _load(params, overlay)
    typer.echo(closing_summary(cfg, tracking_uri=tracking_uri(cfg)), nl=False)


if __name__ == "__main__":
    app()
