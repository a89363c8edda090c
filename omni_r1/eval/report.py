"""Report tables shaped like the paper's Tables 2 and 4, and the data behind the plots.

Table 2 (main results): rows = the base row, then per track the PeSFT-only checkpoint and
each PeRPO checkpoint; columns = the four Omni-Bench slices, the sample-weighted average and
the relative gain of the average over the base row, ``(avg − base) / base``.

The base row is the evaluation of the untrained base model (``--step base``) when one
exists, else the PeSFT-only checkpoint of the ``omni_r1`` track (the tiny default has no
pretrained Anole to start from, so "base" means "before PeRPO"). In the paper the base row
is Anole-7B.

Table 4 (ablations, Omni-R1-Zero track): w/o PeRPO = the PeSFT-only checkpoint; full = PeRPO
step k; w/o PeReward = the ``no_perception_<k>`` checkpoint (PeRPO without the perception
reward), each with its gain over w/o PeRPO.

Every accuracy cell shows its 95% bootstrap interval over items when the evaluation wrote one
(the ``accuracy_interval`` block, :func:`omni_r1.eval.paired.accuracy_intervals`); the paired
comparisons of checkpoints are :mod:`omni_r1.eval.comparisons`.

Both tables carry, beside the accuracy, the functional-image fidelity of the checkpoint's
generated images (:mod:`omni_r1.eval.fidelity`; not in the paper): the headline score over all
scored images with its 95% bootstrap interval, the share of images that pass the threshold,
and how many generated images could be scored at all.

Plots data (for ``dvc plots``): ``accuracy_<track>.csv`` (step, every slice, average; step 0
is the PeSFT-only checkpoint), ``fidelity_<track>.csv`` (step, the headline fidelity per
slice and overall with its interval, the pass share) and ``reward_<track>.csv`` (step,
reward, accuracy, format, perception of the PeRPO rollouts, from ``metrics/perpo_<track>.json``:
its per-step ``history`` when present, else the step-0 and last-step summary values).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_r1.config import TRACKS, Config
from omni_r1.data.records import UNI_TASKS
from omni_r1.eval.checkpoints import (
    BASE_STEP,
    PESFT_STEP,
    CheckpointRef,
    is_configured,
    parse_metrics_name,
)
from omni_r1.eval.evaluate import AVERAGE_KEY
from omni_r1.eval.paired import ACCURACY_INTERVAL_KEY

SLICE_TITLES = {
    "natural": "Natural",
    "structured": "Structured",
    "diagrammatic": "Diagrammatic",
    "vision_operational": "Vision-Op",
}
TRACK_TITLES = {"omni_r1": "Omni-R1", "omni_r1_zero": "Omni-R1-Zero"}
PAPER_SIZES = {"omni_r1": {30: "M", 60: "L"}, "omni_r1_zero": {10: "T", 20: "S", 30: "M"}}
REWARD_KEYS = ("reward", "accuracy", "format", "perception")
FIDELITY_KEY = "fidelity"  # the block written by omni_r1.eval.fidelity.fidelity_metrics
HEADLINE_ENTRIES = {"code_agreement": "code_agreement", "psnr": "psnr"}  # headline → summary entry shown
FIDELITY_COLUMNS = ("Fidelity [95% CI]", "Pass", "Scored images")


@dataclass(frozen=True)
class Row:
    label: str
    metrics: Mapping[str, Any]  # accuracy per slice + average, and the "fidelity" block
    gain: float | None  # relative gain of the average over the reference row


def read_omnibench_metrics(cfg: Config) -> dict[CheckpointRef, dict[str, float]]:
    """``omnibench_<track>_<step>.json`` under ``paths.metrics_dir`` of every checkpoint the params
    define (:func:`omni_r1.eval.checkpoints.is_configured`), by checkpoint.

    Metrics files are versioned by git, so the files of checkpoints a configuration no longer
    defines stay behind; they are left out.
    """
    found = {}
    for path in sorted(Path(cfg.paths.metrics_dir).glob("omnibench_*.json")):
        ref = parse_metrics_name(path)
        if is_configured(ref, cfg):
            found[ref] = json.loads(path.read_text(encoding="utf-8"))
    return found


def step_order(ref: CheckpointRef) -> tuple[int, int, int]:
    """base, pesft, PeRPO steps ascending, then the no-perception steps ascending."""
    rank = {"base": 0, "pesft": 1, "perpo": 2, "no_perception": 3}[ref.kind]
    return (TRACKS.index(ref.track), rank, ref.perpo_step or 0)


def base_ref(results: Mapping[CheckpointRef, Any]) -> CheckpointRef | None:
    """The base row: a ``base`` evaluation if any, else the omni_r1 PeSFT-only checkpoint."""
    bases = sorted(ref for ref in results if ref.step == BASE_STEP)
    if bases:
        return bases[0]
    fallback = CheckpointRef("omni_r1", PESFT_STEP)
    return fallback if fallback in results else None


def relative_gain(value: float, reference: float | None) -> float | None:
    if reference is None or reference == 0:
        return None
    return (value - reference) / reference


def checkpoint_label(ref: CheckpointRef) -> str:
    track = TRACK_TITLES[ref.track]
    if ref.kind == "base":
        return "Base model"
    if ref.kind == "pesft":
        return f"{track} PeSFT only"
    if ref.kind == "no_perception":
        return f"{track} w/o PeReward (step {ref.perpo_step})"
    size = PAPER_SIZES[ref.track].get(ref.perpo_step or 0)
    return f"{track}-{size} (step {ref.perpo_step})" if size else f"{track} (step {ref.perpo_step})"


def table2_rows(results: Mapping[CheckpointRef, Mapping[str, Any]]) -> list[Row]:
    """Base row first, then PeSFT-only and PeRPO checkpoints per track (no ablations)."""
    base = base_ref(results)
    reference = results[base][AVERAGE_KEY] if base is not None else None
    rows = []
    if base is not None:
        label = "Base model" if base.kind == "base" else f"Base = {checkpoint_label(base)}"
        rows.append(Row(label, results[base], 0.0 if reference else None))
    for ref in sorted(results, key=step_order):
        if ref == base or ref.kind in ("base", "no_perception"):
            continue
        rows.append(Row(checkpoint_label(ref), results[ref], relative_gain(results[ref][AVERAGE_KEY], reference)))
    return rows


def table4_rows(results: Mapping[CheckpointRef, Mapping[str, Any]], track: str = "omni_r1_zero") -> list[Row]:
    """w/o PeRPO, then for each step k: full (PeRPO k) and w/o PeReward (no_perception_k)."""
    pesft = CheckpointRef(track, PESFT_STEP)
    reference = results[pesft][AVERAGE_KEY] if pesft in results else None
    rows = []
    if pesft in results:
        rows.append(Row(f"{TRACK_TITLES[track]} w/o PeRPO (PeSFT only)", results[pesft], 0.0 if reference else None))
    steps = sorted({ref.perpo_step for ref in results if ref.track == track and ref.perpo_step is not None})
    for step in steps:
        for ref, label in (
            (CheckpointRef(track, str(step)), f"{TRACK_TITLES[track]} full (step {step})"),
            (CheckpointRef(track, f"no_perception_{step}"), f"{TRACK_TITLES[track]} w/o PeReward (step {step})"),
        ):
            if ref in results:
                rows.append(Row(label, results[ref], relative_gain(results[ref][AVERAGE_KEY], reference)))
    return rows


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def accuracy_cell(metrics: Mapping[str, Any], group: str) -> str:
    """``0.250 [0.125, 0.375]`` from the ``accuracy_interval`` block, the bare accuracy without one."""
    block = metrics.get(ACCURACY_INTERVAL_KEY)
    summary = block.get(group) if isinstance(block, Mapping) else None
    if not isinstance(summary, Mapping) or summary.get("low") is None:
        return _cell(metrics.get(group))
    return f"{_cell(metrics.get(group))} [{_cell(summary['low'])}, {_cell(summary['high'])}]"


def fidelity_summary(metrics: Mapping[str, Any], group: str = AVERAGE_KEY) -> dict[str, Any] | None:
    """The headline interval, pass share and image counts of one slice (or ``average``); None if absent."""
    block = metrics.get(FIDELITY_KEY)
    if not isinstance(block, Mapping) or not isinstance(block.get(group), Mapping):
        return None
    summary = block[group]
    return {
        "headline": summary[HEADLINE_ENTRIES[block["headline"]]],
        "pass_share": summary["pass_share"]["mean"],
        "images": summary["images"],
    }


def fidelity_cells(metrics: Mapping[str, Any]) -> list[str]:
    """``0.412 [0.301, 0.520]`` | pass share | scored/all images, or dashes without a fidelity block."""
    summary = fidelity_summary(metrics)
    if summary is None:
        return ["–"] * len(FIDELITY_COLUMNS)
    images = summary["images"]
    return [interval_cell(summary), _cell(summary["pass_share"]), f"{images['scored']}/{sum(images.values())}"]


def markdown_table(rows: Sequence[Row], gain_title: str) -> str:
    """A Markdown table: label | slices | Avg | fidelity (interval, pass share, scored images) | gain (%)."""
    header = ["Model", *SLICE_TITLES.values(), "Avg", *FIDELITY_COLUMNS, gain_title]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if not rows:
        lines.append("| (no evaluation yet) |" + " – |" * (len(header) - 1))
    for row in rows:
        cells = [accuracy_cell(row.metrics, name) for name in (*UNI_TASKS, AVERAGE_KEY)]
        gain = "–" if row.gain is None else f"{100 * row.gain:+.1f}%"
        lines.append("| " + " | ".join([row.label, *cells, *fidelity_cells(row.metrics), gain]) + " |")
    return "\n".join(lines)


def fidelity_legend(results: Mapping[CheckpointRef, Mapping[str, Any]]) -> str:
    """One sentence on what the fidelity columns show, naming the headline score and threshold."""
    blocks = [m[FIDELITY_KEY] for m in results.values() if isinstance(m.get(FIDELITY_KEY), Mapping)]
    if not blocks:
        return "No fidelity scores in these evaluations."
    headline, threshold = blocks[0]["headline"], blocks[0]["pass_threshold"]
    shown = "code agreement (share of equal codes)" if headline == "code_agreement" else "PSNR in dB"
    return (
        f"Fidelity = {shown} of each generated image against the executor's rendering of its step's "
        f"action, pooled over the scored images, with a 95% bootstrap interval over answers; Pass = share "
        f"of scored images whose {headline} score reaches {threshold}; Scored images = images with an "
        "action the executor could render / all generated images."
    )


PROTOCOL_KEYS = ("prompt_template", "decoding", "sampling", "temperature", "top_p", "max_new_tokens", "judge")


def read_protocols(metrics_dir: Path | str, refs: Iterable[CheckpointRef]) -> dict[str, dict[str, Any]]:
    """``<track>_<step>`` → the protocol of its numbers, from ``protocol_<track>_<step>.json``, for
    the checkpoints ``refs`` that have one."""
    paths = {ref.name: Path(metrics_dir) / f"protocol_{ref.name}.json" for ref in sorted(refs, key=lambda ref: ref.name)}
    return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in paths.items() if path.is_file()}


def protocol_table(protocols: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per evaluated checkpoint with its prompt, decoding, sampling and judge."""
    lines = ["| Checkpoint | " + " | ".join(PROTOCOL_KEYS) + " |", "|" + "---|" * (len(PROTOCOL_KEYS) + 1)]
    for name, protocol in protocols.items():
        cells = ["–" if protocol.get(key) is None else str(protocol[key]) for key in PROTOCOL_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(
    results: Mapping[CheckpointRef, Mapping[str, Any]],
    projection_png: str | None,
    plots: Sequence[str],
    comparisons: str = "",
    side_by_side: Sequence[str] = (),
    protocols: Mapping[str, Mapping[str, Any]] | None = None,
    ablation_steps: Sequence[int] = (),
) -> str:
    """The whole report page: Table 2, Table 4, paired comparisons, the protocol of every number,
    plots and projection references.

    Args:
        comparisons: the paired-comparison section (:func:`omni_r1.eval.comparisons.comparisons_markdown`).
        side_by_side: relative paths of the PeSFT-vs-PeRPO answer pages.
        protocols: ``<track>_<step>`` → its evaluation protocol (:func:`read_protocols`).
        ablation_steps: the saved steps of the no-perception run that are evaluated (``eval.ablation_steps``).
    """
    base = base_ref(results)
    base_note = (
        "none evaluated" if base is None
        else f"`{base.name}` ({'the base model' if base.kind == 'base' else 'no base evaluation: PeSFT-only omni_r1'})"
    )  # fmt: skip
    parts = [
        "# Omni-Bench report",
        "",
        "Accuracy per slice; Avg is over all samples (slices weighted by their sample counts). "
        "Brackets: 95% percentile-bootstrap interval over items (seeded; `intervals` in params.yaml).",
        "",
        "## Table 2: main results",
        "",
        f"Base row: {base_note}. Gain = relative change of Avg over the base row.",
        "",
        fidelity_legend(results),
        "",
        markdown_table(table2_rows(results), "Gain vs base"),
        "",
        "## Table 4: ablations (Omni-R1-Zero)",
        "",
        "Gain = relative change of Avg over w/o PeRPO."
        + (f" w/o PeReward is evaluated at step {', '.join(map(str, ablation_steps))} (`eval.ablation_steps`)."
           if ablation_steps else ""),
        "",
        markdown_table(table4_rows(results), "Gain vs w/o PeRPO"),
        "",
        "## Functional-image fidelity per Uni-Task",
        "",
        "Headline fidelity [95% bootstrap interval] of the generated images of each slice.",
        "",
        fidelity_slice_table(results),
        "",
        "## Paired comparisons on the same items",
        "",
        comparisons or "Not computed.",
        "",
        "## Same question, PeSFT and PeRPO side by side",
        "",
        *([f"- [{path}]({path})" for path in side_by_side] or ["No PeSFT/PeRPO pair evaluated."]),
        "",
        "## Protocol of every number",
        "",
        "Prompt template, decoding, sampling, budget and judge each checkpoint was evaluated under.",
        "",
        protocol_table(protocols or {}),
        "",
        "## Plots data",
        "",
        *[f"- `{path}`" for path in plots],
    ]
    if projection_png:
        parts += ["", "## Generated-image embeddings (Figure 4)", "", f"![projection]({projection_png})"]
    return "\n".join(parts) + "\n"


def interval_cell(summary: Mapping[str, Any] | None) -> str:
    """``mean [low, high]`` of a headline summary, ``–`` when absent or without scored images."""
    if summary is None or summary["headline"]["mean"] is None:
        return "–"
    head = summary["headline"]
    return f"{head['mean']:.3f} [{_cell(head['low'])}, {_cell(head['high'])}]"


def fidelity_slice_table(results: Mapping[CheckpointRef, Mapping[str, Any]]) -> str:
    """Headline fidelity with its interval per Uni-Task and overall, one row per checkpoint."""
    header = ["Model", *SLICE_TITLES.values(), "All"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ref in sorted(results, key=step_order):
        if fidelity_summary(results[ref]) is None:
            continue
        cells = [interval_cell(fidelity_summary(results[ref], name)) for name in (*UNI_TASKS, AVERAGE_KEY)]
        lines.append("| " + " | ".join([checkpoint_label(ref), *cells]) + " |")
    if len(lines) == 2:
        lines.append("| (no fidelity scores yet) |" + " – |" * (len(header) - 1))
    return "\n".join(lines)


def fidelity_series(results: Mapping[CheckpointRef, Mapping[str, Any]], track: str) -> list[dict[str, Any]]:
    """Headline fidelity vs PeRPO step for one track (step 0 = PeSFT-only), per slice and overall."""
    rows = []
    for ref in sorted(results, key=step_order):
        overall = fidelity_summary(results[ref])
        if ref.track != track or ref.kind not in ("pesft", "perpo") or overall is None:
            continue
        row: dict[str, Any] = {"step": 0 if ref.kind == "pesft" else ref.perpo_step}
        for name in UNI_TASKS:
            summary = fidelity_summary(results[ref], name)
            row[name] = summary["headline"]["mean"] if summary is not None else None
        head = overall["headline"]
        row.update({AVERAGE_KEY: head["mean"], "low": head["low"], "high": head["high"], "pass_share": overall["pass_share"]})
        rows.append(row)
    return rows


FIDELITY_SERIES_COLUMNS = ("step", *UNI_TASKS, "pass_share", "low", "high", AVERAGE_KEY)  # dvc plots: y = last


def accuracy_series(results: Mapping[CheckpointRef, Mapping[str, Any]], track: str) -> list[dict[str, Any]]:
    """Accuracy vs PeRPO step for one track; the PeSFT-only checkpoint is step 0."""
    rows = []
    for ref in sorted(results, key=step_order):
        if ref.track != track or ref.kind not in ("pesft", "perpo"):
            continue
        step = 0 if ref.kind == "pesft" else ref.perpo_step
        rows.append({"step": step, **{key: results[ref].get(key) for key in (*UNI_TASKS, AVERAGE_KEY)}})
    return rows


def reward_series(perpo_metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """PeRPO rollout reward vs step from ``metrics/perpo_<track>.json``.

    Uses a per-step ``history`` list (dicts with ``step`` and ``reward/mean``,
    ``reward/accuracy``, ...) when the file has one, else the summary's ``*_step0`` and
    ``*_last`` values at steps 0 and ``steps``.
    """
    history = perpo_metrics.get("history")
    if isinstance(history, list) and history:
        return [
            {"step": entry.get("step", index + 1),
             **{key: entry.get(f"reward/{'mean' if key == 'reward' else key}") for key in REWARD_KEYS}}
            for index, entry in enumerate(history)
        ]  # fmt: skip
    steps = perpo_metrics.get("steps") or 0
    if not steps:
        return []
    first = {"step": 0, **{key: perpo_metrics.get(f"{key}_step0") for key in REWARD_KEYS}}
    last = {"step": steps, **{key: perpo_metrics.get(f"{key}_last") for key in REWARD_KEYS}}
    return [first, last]


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path | str) -> Path:
    """A CSV with a header (written even without rows); None cells stay empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key) for key in columns})
    return path


def write_plots_data(
    results: Mapping[CheckpointRef, Mapping[str, Any]],
    perpo_metrics: Mapping[str, Mapping[str, Any]],
    plots_dir: Path | str,
) -> list[Path]:
    """``accuracy_<track>.csv``, ``fidelity_<track>.csv`` and ``reward_<track>.csv`` for every track.

    Args:
        results: Omni-Bench metrics by checkpoint.
        perpo_metrics: ``perpo_<track>`` file stem → its JSON (``perpo_no_perception`` too).
        plots_dir: output folder.
    """
    written = []
    for track in TRACKS:
        written.append(
            write_csv(accuracy_series(results, track), ["step", *UNI_TASKS, AVERAGE_KEY],
                      Path(plots_dir) / f"accuracy_{track}.csv")
        )  # fmt: skip
        written.append(
            write_csv(fidelity_series(results, track), FIDELITY_SERIES_COLUMNS, Path(plots_dir) / f"fidelity_{track}.csv")
        )
    for stem, metrics in sorted(perpo_metrics.items()):
        name = stem.removeprefix("perpo_")
        written.append(
            write_csv(reward_series(metrics), ["step", *REWARD_KEYS], Path(plots_dir) / f"reward_{name}.csv")
        )
    return written


def read_perpo_metrics(metrics_dir: Path | str) -> dict[str, dict[str, Any]]:
    """``perpo_<name>`` → JSON of every ``metrics/perpo_*.json``."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(Path(metrics_dir).glob("perpo_*.json"))
    }
