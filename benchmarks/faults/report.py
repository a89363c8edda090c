"""The campaign's sections in order, and its report: ``reports/faults.md`` + ``metrics/faults.json``."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.faults import exposure, forked
from benchmarks.faults.workspace import REPO_ROOT, build_inputs, new_workspace, workspace_config

Log = Callable[[str], None]


@dataclass
class Results:
    argv: list[str]
    seconds: float = 0.0
    kills: list[Any] = field(default_factory=list)
    corrupt: Any = None
    fuzz: Any = None
    config_fuzz: Any = None
    outages: list[Any] = field(default_factory=list)
    concurrency: Any = None
    exposure: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """Flat ``name -> value`` figures (metrics/faults.json)."""
        out: dict[str, Any] = {"campaign_seconds": round(self.seconds, 1)}
        for k in self.kills:
            out[f"kills_{k.stage}_survived"] = k.survived
            out[f"kills_{k.stage}_total"] = k.kills
            out[f"kills_{k.stage}_identical_completions"] = k.identical_completions
            out[f"kills_{k.stage}_completions"] = k.completions
            out[f"kills_{k.stage}_corrupt_or_half_written"] = k.integrity_faults + k.half_written
            if k.max_lost_steps is not None:
                out[f"kills_{k.stage}_max_lost_steps"] = k.max_lost_steps
        for o in self.outages:
            key = o.writer.split(" (")[0].replace(" ", "_").replace("/", "").replace("__", "_").lower()
            out[f"outages_{key}_survived"] = o.survived
            out[f"outages_{key}_total"] = o.outages
            out[f"outages_{key}_during_transfer"] = o.outages - o.missed
            if o.partial_objects_checked:
                out[f"outages_{key}_partial_objects"] = o.partial_objects
        if self.concurrency is not None:
            c = self.concurrency
            out.update(concurrency_trials=c.trials, concurrency_both_finished=c.both_finished,
                       concurrency_one_refused_clearly=c.one_refused_clearly, concurrency_consistent_after=c.consistent_after)  # fmt: skip
        if self.corrupt is not None:
            out.update(corrupt_injected=self.corrupt.injected, corrupt_detected_naming_file=self.corrupt.detected_named,
                       corrupt_detected_unnamed=self.corrupt.detected_unnamed, corrupt_silently_used=self.corrupt.silent)  # fmt: skip
        if self.fuzz is not None:
            out.update(fuzz_cases=self.fuzz.cases, fuzz_exceptions=self.fuzz.exceptions + self.fuzz.parse_exceptions,
                       fuzz_scores_out_of_range=self.fuzz.out_of_range)  # fmt: skip
        if self.config_fuzz is not None:
            out.update(config_cases=self.config_fuzz.cases, config_errors_naming_key=self.config_fuzz.named,
                       config_loaded_malformed=self.config_fuzz.loaded, config_other_errors=self.config_fuzz.other_errors)  # fmt: skip
        for name, found in self.exposure.items():
            out[name] = len(found)
        out["campaign_errors"] = len(self.errors)
        return out

    def all_survived(self) -> bool:
        f = self.figures()
        bad = [
            f.get("campaign_errors"), f.get("corrupt_detected_unnamed", 0), f.get("corrupt_silently_used", 0),
            f.get("fuzz_exceptions", 0), f.get("fuzz_scores_out_of_range", 0),
            f.get("config_loaded_malformed", 0), f.get("config_other_errors", 0),
            f.get("config_cases", 0) - f.get("config_errors_naming_key", 0),
            *(f[k] for k in f if k.endswith("_partial_objects") or k.endswith("_corrupt_or_half_written")),
            *(len(v) for v in self.exposure.values()),
        ]  # fmt: skip
        whole = [(k.survived, k.kills) for k in self.kills] + [(o.survived, o.outages) for o in self.outages]
        concurrency = self.concurrency is None or (
            self.concurrency.both_finished + self.concurrency.one_refused_clearly == self.concurrency.trials
            and self.concurrency.consistent_after == self.concurrency.trials
        )
        return not any(bad) and all(a == b for a, b in whole) and concurrency


def perpo_workspace(root: Path, log: Log) -> Path:
    """A workspace with the tiny model, data, codes and a finished PeRPO run (reused from the kills)."""
    from benchmarks.faults.kills import STAGES

    folder = root / "kills" / "perpo"
    if not (folder / "faults.yaml").is_file():
        folder = root / "artifacts"
        log("building a workspace (prepare, tokenizer, encode, pesft)")
        if forked.run_to_end(lambda: build_inputs(folder, "perpo"), root, root / "artifacts.log") != 0:
            raise RuntimeError(f"building {folder} failed; see {root / 'artifacts.log'}")
    cfg = workspace_config(folder)
    last = folder / cfg.paths.checkpoints_dir / "omni_r1" / "perpo" / f"step_{cfg.perpo.save_steps[-1]}"
    if not last.is_dir() and forked.run_to_end(lambda: STAGES["perpo"].run(cfg), folder, root / "artifacts.log") != 0:
        raise RuntimeError(f"the PeRPO run in {folder} failed; see {root / 'artifacts.log'}")
    return folder


def run_sections(args: argparse.Namespace, root: Path, results: Results, log: Log) -> None:
    from benchmarks.faults import concurrency, config_fuzz, corrupt, fuzz, kills, outages

    def section(name: str, body: Callable[[], None]) -> None:
        if name not in args.sections:
            return
        started = time.perf_counter()
        log(f"== {name}")
        try:
            body()
        except Exception as err:  # noqa: BLE001 - a broken section is reported, the others still run
            results.errors.append(f"{name}: {type(err).__name__}: {err}")
            log(f"  {name} FAILED: {type(err).__name__}: {err}")
        log(f"  ({name} took {time.perf_counter() - started:.0f} s)")

    def run_kills() -> None:
        results.kills = kills.run(root / "kills", args.stages, args.kills, args.seed, log)

    def run_corrupt() -> None:
        folder = perpo_workspace(root, log)
        results.corrupt = corrupt.run(workspace_config(folder), folder, args.corrupt, args.seed, log)

    def run_fuzz() -> None:
        folder = perpo_workspace(root, log)
        cfg = workspace_config(folder)
        results.fuzz = fuzz.run(cfg, folder / cfg.model.local_dir, args.fuzz, args.seed, log)
        results.config_fuzz = config_fuzz.run(REPO_ROOT / "params.yaml", args.config_cases, args.seed)

    def run_outages() -> None:
        cfg = new_workspace(root / "outages-config")  # only its storage section is used
        results.outages = outages.run(cfg, root / "outages", args.outages, args.seed, log)

    def run_concurrency() -> None:
        results.concurrency = concurrency.run(root / "concurrency", args.trials, args.seed, log)

    (root / "kills").mkdir(exist_ok=True)
    for name, body in (("kills", run_kills), ("corrupt", run_corrupt), ("fuzz", run_fuzz),
                       ("outages", run_outages), ("concurrency", run_concurrency)):  # fmt: skip
        section(name, body)
    if "exposure" in args.sections:
        results.exposure = {
            "secret_leaks_found": exposure.leaks([root], exposure.SECRETS),
            "unsafe_checkpoint_loads": exposure.unsafe_loads(REPO_ROOT),
            "servers_bound_to_non_loopback": exposure.exposed_binds(REPO_ROOT),
        }


def markdown(results: Results) -> str:
    f = results.figures()
    lines = [
        "# Fault campaign",
        "",
        f"`python -m benchmarks.faults {' '.join(results.argv)}` (`make faults`) on {platform.machine()} "
        f"with {len(__import__('os').sched_getaffinity(0))} usable cores: {results.seconds / 60:.1f} min.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in f.items()]
    lines += ["", "## Kills (SIGKILL at seeded random moments, then resume)", ""]
    for k in results.kills:
        lost = "" if k.max_lost_steps is None else f"; most steps lost by a kill: {k.max_lost_steps}"
        lines.append(
            f"- {k.stage}: {k.survived}/{k.kills} kills survived; {k.identical_completions}/{k.completions} "
            f"completed chains with weights byte-identical to the uninterrupted run ({k.reference_seconds:.0f} s); "
            f"{k.integrity_faults} corrupt and {k.half_written} half-written outputs seen after kills; "
            f"{k.other_files_differing} other output files differing{lost}."
        )
        lines += [f"  - {note}" for note in k.notes]
    if results.corrupt is not None:
        lines += ["", "## Corrupt artifacts (truncated or one bit flipped, then loaded)", ""]
        for target, (injected, named) in results.corrupt.by_target.items():
            lines.append(f"- {target}: {named}/{injected} refused with an error naming the file")
        lines += [f"  - {example}" for example in results.corrupt.examples[:10]]
    if results.fuzz is not None:
        fz = results.fuzz
        lines += ["", "## Fuzzed model outputs (decode, parser, grader, reward)", ""]
        lines.append(f"- {fz.cases} cases in {fz.seconds:.0f} s ({', '.join(f'{k} {v}' for k, v in fz.by_kind.items())}): "
                     f"{fz.exceptions} exceptions in scoring, {fz.parse_exceptions} in parsing, {fz.out_of_range} scores out of [0, 1].")  # fmt: skip
        lines += [f"  - {example}" for example in fz.examples]
    if results.config_fuzz is not None:
        cf = results.config_fuzz
        lines += ["", "## Malformed params.yaml and overlays (wrong type, missing key, unknown key, broken YAML)", ""]
        lines.append(f"- {cf.cases} cases: {cf.named} refused with an error naming the key (broken YAML: the file), "
                     f"{cf.loaded} loaded, {cf.other_errors} other exceptions.")  # fmt: skip
        lines += [f"  - {example}" for example in cf.examples]
    if results.outages:
        lines += ["", "## Storage outages (the S3 endpoint, a proxy in front of moto's server, SIGKILLed mid-transfer and restarted)", ""]
        for o in results.outages:
            lines.append(f"- {o.writer}: {o.survived}/{o.outages} survived (read back byte-identical); "
                         f"{o.first_try_completed} completed by their own retries; "
                         + (f"{o.partial_objects} partial objects visible; " if o.partial_objects_checked else "")
                         + f"{o.missed} kills came after the transfer had ended.")  # fmt: skip
            lines += [f"  - {note}" for note in o.notes]
    if results.concurrency is not None:
        c = results.concurrency
        lines += ["", "## Two pipeline flow runs in one workspace", ""]
        lines.append(f"- {c.trials} trials: {c.both_finished} both finished, {c.one_refused_clearly} one refused "
                     f"naming the holder; consistent afterwards: {c.consistent_after}/{c.trials}.")  # fmt: skip
        lines += [f"  - {note}" for note in c.notes]
    if results.exposure:
        lines += ["", "## Secrets and exposure", ""]
        for name, found in results.exposure.items():
            lines.append(f"- {name}: {len(found)}")
            lines += [f"  - {item}" for item in found[:10]]
    if results.errors:
        lines += ["", "## Sections that failed", ""] + [f"- {error}" for error in results.errors]
    return "\n".join(lines) + "\n"


def write(results: Results, report_path: Path, metrics_path: Path, root: Path, log: Log) -> None:
    """Write both files, scan them for the secrets too, and write again with that figure."""
    for _ in range(2):
        report_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(markdown(results), encoding="utf-8")
        metrics_path.write_text(json.dumps(results.figures(), indent=1) + "\n", encoding="utf-8")
        if "secret_leaks_found" in results.exposure:
            in_report = exposure.leaks([report_path, metrics_path], exposure.SECRETS)
            results.exposure["secret_leaks_found"] = sorted(set(results.exposure["secret_leaks_found"]) | set(in_report))
    log(f"wrote {report_path} and {metrics_path}")
    log(json.dumps(results.figures(), indent=1))
