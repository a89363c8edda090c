"""What a stage achieved, in one line, and what a whole run achieved, in one page.

- :func:`result_line`: the line ``omni-r1 <stage>`` prints when it ends, built from the value
  the stage's ``run()`` returns (its metrics): what was trained or written, the headline
  number before → after where there is one, and the wall time.
- :func:`closing_summary`: the page ``omni-r1 summary`` prints after ``make run`` and the
  Prefect pipeline flow publishes as a markdown artifact: the Omni-Bench table in short
  (``<paths.metrics_dir>/omnibench_*.json``), the champion and whether this run moved it
  (``promote.json``), the training headlines (``tokenizer.json``, ``pesft_*.json``,
  ``perpo_*.json``), and the files and commands to open next.

Both only read numbers the stages already wrote; nothing here recomputes a metric.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omni_r1.config import Config
from omni_r1.console import format_duration, format_number
from omni_r1.data.records import UNI_TASKS

Parts = list[str]
MAX_GENERIC_VALUES = 4  # numbers shown for a stage without its own formatter


def _num(value: Any, digits: int = 3) -> str:
    """A metric value for a sentence: rounded float, ``n/a`` for missing or NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return format_number(value)


def _count(value: Any) -> str:
    """A count that may have been stored as a float (``650.0`` → ``650``)."""
    return "n/a" if value is None else str(int(value))


def _change(name: str, before: Any, after: Any, digits: int = 3) -> str:
    return f"{name} {_num(before, digits)} → {_num(after, digits)}"


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.0f}%"


# ---------------------------------------------------------------------------------------------
# One line per stage, from what its run() returned
# ---------------------------------------------------------------------------------------------


def gallery_parts(result: Mapping[str, Any]) -> Parts:
    counts = result["metrics"]
    return [f"{counts['trajectories']} example trajectories, {counts['step_images']} step images",
            f"page {result['html']}"]  # fmt: skip


def prepare_parts(result: Mapping[str, Any]) -> Parts:
    records = ", ".join(f"{name} {summary['total']}" for name, summary in result.items())
    skipped = sum(int(summary.get("skipped_total", 0)) for summary in result.values())
    return [f"records: {records}", *([f"{skipped} skipped"] if skipped else [])]


def tokenizer_parts(result: Mapping[str, Any]) -> Parts:
    if not result.get("trained", True):
        return [f"pretrained tokenizers of {result.get('pretrained_id')}; nothing trained"]
    return [
        f"VQ autoencoder trained {_count(result.get('train_steps'))} steps on {_count(result.get('train_images'))} images",
        f"held-out PSNR {_num(result.get('psnr'), 1)} dB",
        f"codebook usage {_percent(result.get('codebook_usage'))}",
        f"BPE vocabulary {_count(result.get('text_vocab_size'))}",
    ]


def encode_parts(result: Mapping[str, Any]) -> Parts:
    encoded = [f"{name} {info.get('images', 0)}" for name, info in result.items() if not info.get("cached")]
    cached = [name for name, info in result.items() if info.get("cached")]
    parts = [f"images encoded: {', '.join(encoded)}"] if encoded else []
    return parts + ([f"up to date: {', '.join(cached)}"] if cached else [])


def base_parts(result: Mapping[str, Any]) -> Parts:
    if not result.get("trained"):
        return [f"not trained: {result.get('reason')}"]
    base, untrained = result.get("base", {}), result.get("untrained", {})
    return [
        f"{result.get('steps')} steps on {result.get('sequences')} pairs",
        f"held-out code accuracy {_num(untrained.get('code_accuracy'))} → {_num(base.get('code_accuracy'))}",
        f"PSNR {_num(untrained.get('psnr_db'), 1)} → {_num(base.get('psnr_db'), 1)} dB "
        f"(VQ ceiling {_num(result.get('vq_reconstruction_psnr_db'), 1)})",
    ]


def bootstrap_parts(result: Mapping[str, Any]) -> Parts:
    return [
        f"{result.get('total')} records, {result.get('generated_images')} step images drawn by the base model",
        f"{result.get('skipped_total', 0)} skipped",
        f"code round-trip agreement {_num(result.get('code_roundtrip_agreement'))}",
    ]


def pesft_parts(result: Mapping[str, Any]) -> Parts:
    return [
        f"{result.get('steps')} steps on {result.get('sequences')} sequences",
        _change("cross-entropy", result.get("ce_first"), result.get("ce_last")),
        _change("perception loss", result.get("perception_first"), result.get("perception_last")),
        f"held-out parse rate {_num(result.get('parse_rate'), 2)}",
    ]


def perpo_parts(result: Mapping[str, Any]) -> Parts:
    if not result.get("steps"):
        return ["no step run"]
    where = "fixed-prompt probe" if result.get("source") == "probe" else "first → last training step"
    return [
        f"{result['steps']} steps",
        _change("reward", result.get("reward_step0"), result.get("reward_last")),
        _change("accuracy", result.get("accuracy_step0"), result.get("accuracy_last")) + f" ({where})",
        f"kept groups {_percent(result.get('kept_group_fraction'))}",
        f"{result.get('skipped_updates', 0)} skipped updates",
    ]


def evaluate_parts(result: Mapping[str, Any]) -> Parts:
    metrics = result["metrics"]
    slices = ", ".join(f"{name} {_num(metrics[name], 2)}" for name in UNI_TASKS if name in metrics)
    return [f"Omni-Bench average {_num(metrics.get('average'))}", slices, f"gallery {result.get('gallery')}"]


def report_parts(result: Mapping[str, Any]) -> Parts:
    return [
        f"tables {result['markdown']}",
        f"{len(result.get('plots', []))} plot files",
        f"projection {result['projection']} ({str(result.get('projection_method', '')).upper()})",
    ]


def promote_parts(result: Mapping[str, Any]) -> Parts:
    return [f"{result['checkpoint']} (average {_num(result['average'])}) registered as version {result['version']}",
            champion_sentence(result)]  # fmt: skip


def champion_sentence(promote: Mapping[str, Any]) -> str:
    """Whether the champion moved, from ``promote.json``."""
    before = promote.get("champion_version")
    if promote.get("promoted"):
        if before is None:
            return f"champion: version {promote['version']} (first champion)"
        return (f"champion moved: version {before} (average {_num(promote.get('champion_average'))}) "
                f"→ version {promote['version']}")  # fmt: skip
    return f"champion unchanged: version {before} (average {_num(promote.get('champion_average'))})"


def generic_parts(result: Mapping[str, Any]) -> Parts:
    numbers = [(k, v) for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return [f"{key} {format_number(value)}" for key, value in numbers[:MAX_GENERIC_VALUES]]


RESULT_PARTS: dict[str, Callable[[Mapping[str, Any]], Parts]] = {
    "gallery": gallery_parts,
    "prepare": prepare_parts,
    "tokenizer": tokenizer_parts,
    "encode": encode_parts,
    "base": base_parts,
    "bootstrap": bootstrap_parts,
    "pesft": pesft_parts,
    "perpo": perpo_parts,
    "evaluate": evaluate_parts,
    "report": report_parts,
    "promote": promote_parts,
}


def result_line(stage: str, result: Mapping[str, Any] | None, seconds: float | None, subject: str = "") -> str:
    """``"✓ pesft omni_r1: 200 steps on 256 sequences · cross-entropy 6.2 → 1.3 · … · 1m02s"``.

    Args:
        stage: the stage name (``omni-r1 <stage>``).
        result: what the stage's ``run()`` returned (its metrics dict).
        seconds: wall time of the stage; None leaves it out (the closing summary).
        subject: which run of the stage (``"omni_r1"``, ``"omni_r1 step 60"``).
    """
    parts = RESULT_PARTS.get(stage, generic_parts)(result or {}) if result else []
    if seconds is not None:
        parts.append(format_duration(seconds))
    title = f"{stage} {subject}".strip()
    return f"✓ {title}: {' · '.join(part for part in parts if part)}"


# ---------------------------------------------------------------------------------------------
# The closing summary of a run
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def read_omnibench(metrics_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(checkpoint label, metrics)`` per ``omnibench_*.json``, in report order; a file whose
    name is outside the checkpoint vocabulary keeps its own name and comes last."""
    from omni_r1.eval.checkpoints import StepError, parse_metrics_name
    from omni_r1.eval.report import step_order

    found = []
    for path in sorted(metrics_dir.glob("omnibench_*.json")):
        try:
            ref = parse_metrics_name(path)
            label, order = f"{ref.track} {ref.step}", (0, step_order(ref))
        except StepError:
            label, order = path.stem.removeprefix("omnibench_"), (1, (0, 0, 0))
        found.append((order, label, _read_json(path) or {}))
    return [(label, values) for _, label, values in sorted(found, key=lambda row: (row[0], row[1]))]


def omnibench_table(metrics_dir: Path) -> list[str]:
    """Markdown rows: one per evaluated checkpoint (report order), slices and average."""
    from omni_r1.eval.report import SLICE_TITLES

    results = read_omnibench(metrics_dir)
    if not results:
        return [f"No Omni-Bench results yet: {metrics_dir}/omnibench_*.json appear once the evaluate stages run."]
    slices = [name for name in UNI_TASKS if any(name in values for _, values in results)]
    rows = ["| checkpoint | " + " | ".join(SLICE_TITLES[s] for s in slices) + " | average |",
            "|---" * (len(slices) + 2) + "|"]  # fmt: skip
    for label, values in results:
        cells = [_num(values.get(s), 2) for s in slices] + [f"**{_num(values.get('average'))}**"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    label, best = max(results, key=lambda row: row[1].get("average", float("-inf")))
    rows += ["", f"Best: {label} (average {_num(best.get('average'))})."]
    return rows


def champion_lines(metrics_dir: Path, model_name: str, alias: str) -> list[str]:
    promote = _read_json(metrics_dir / "promote.json")
    if promote is None:
        return ["No champion yet: the promote stage has not run."]
    current = promote["version"] if promote.get("promoted") else promote.get("champion_version")
    return [
        f"- {champion_sentence(promote)}; `models:/{model_name}@{alias}` is version {current}",
        f"- this run registered {promote['checkpoint']} (average {_num(promote['average'])}) "
        f"as version {promote['version']}",
    ]


def training_lines(metrics_dir: Path) -> list[str]:
    """The result line of each training stage, rebuilt from its metrics file (no wall time)."""
    lines = []
    for stage in ("tokenizer", "base"):
        metrics = _read_json(metrics_dir / f"{stage}.json")
        if metrics is not None:
            lines.append(result_line(stage, metrics, None))
    for stage in ("pesft", "perpo"):
        for path in sorted(metrics_dir.glob(f"{stage}_*.json")):
            lines.append(result_line(stage, _read_json(path), None, path.stem.removeprefix(f"{stage}_")))
    return [f"- {line.removeprefix('✓ ')}" for line in lines]


def next_steps(cfg: Config, uri: str) -> list[str]:
    """Files and commands to open next."""
    ui = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else f"open {uri}"
    return [
        f"- report (Tables 2 and 4, plots): `{Path(cfg.report.out_dir) / 'omnibench.md'}`",
        f"- trajectory galleries: `{Path(cfg.gallery.out_dir) / 'index.html'}`, "
        f"one page per checkpoint in `{cfg.eval.gallery_dir}/`",
        f"- runs, per-step curves, registered models: `{ui}`",
        "- metrics of this run and of DVC experiments: `dvc exp show`, `dvc metrics show`",
    ]


def closing_summary(cfg: Config, root: Path | str = ".", tracking_uri: str | None = None) -> str:
    """The run summary as markdown (module docstring).

    Args:
        cfg: the run's config (metrics dir, report and gallery paths, registry names).
        root: project root the config's relative paths are read from.
        tracking_uri: the MLflow tracking URI in use (default ``tracking.tracking_uri``).
    """
    metrics_dir = Path(root) / cfg.paths.metrics_dir
    sections = [
        "# omni-r1 run summary", "",
        "## Omni-Bench accuracy", "", *omnibench_table(metrics_dir), "",
        "## Champion", "", *champion_lines(metrics_dir, cfg.tracking.registered_model, cfg.tracking.champion_alias), "",
    ]  # fmt: skip
    training = training_lines(metrics_dir)
    if training:
        sections += ["## Training", "", *training, ""]
    sections += ["## Open next", "", *next_steps(cfg, tracking_uri or cfg.tracking.tracking_uri)]
    return "\n".join(sections) + "\n"
