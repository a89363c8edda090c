"""Malformed params.yaml and overlay files: every error must name the key (or the file).

Each case mutates one leaf of the project's params.yaml, in params.yaml itself or in an overlay
holding only that key: a value of the wrong type, a missing key, an unknown key beside it, or
broken YAML. A case passes when ``load_config`` raises ``ConfigError`` whose message names the
dotted key (broken YAML: the file), and fails when it loads or raises anything else.
"""

from __future__ import annotations

import copy
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from omni_r1.config import ConfigError, load_config

MUTATIONS = ("wrong_type", "missing", "unknown_key", "broken_yaml")
# name -> value mappings whose keys are the user's (slices, sources, tracks, stages): adding or
# dropping one of their keys is legal, so only wrong types and broken YAML are faults there
FREE_FORM = ("data.omnibench", "data.local_paths", "data.revisions", "data.hub_configs", "pesft.datasets",
             "orchestration.stage_timeout_s", "general_bench.benchmarks", "model.pretrained_config")
WHERE = ("params", "overlay")


@dataclass
class ConfigFuzzFigures:
    cases: int = 0
    named: int = 0  # ConfigError naming the key (or, for broken YAML, the file)
    loaded: int = 0  # the malformed file was accepted
    other_errors: int = 0  # an exception that is not a ConfigError
    examples: list[str] = field(default_factory=list)


def leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the non-empty-dict leaves of a params mapping."""
    paths = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += leaves(value, path + ".")
        else:
            paths.append(path)
    return paths


def nested(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def parent_and_key(data: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, key = path.split(".")
    node = data
    for name in parents:
        node = node[name]
    return node, key


def case(params: dict[str, Any], path: str, mutation: str, where: str) -> tuple[dict[str, Any], str | None, str]:
    """(params to write, overlay text or None, what the error must name)."""
    data = copy.deepcopy(params)
    parent, key = parent_and_key(data, path)
    if mutation == "broken_yaml":
        text = yaml.safe_dump(nested(path, parent[key]))
        return data, text + f"{key}: [unclosed\n", "ov.yaml"  # always an overlay: params.yaml must parse for the rest
    if mutation == "wrong_type":
        bad: Any = {"not": ["a", parent[key]]} if not isinstance(parent[key], dict) else "not a mapping"
        if where == "overlay":
            return data, yaml.safe_dump(nested(path, bad)), path
        parent[key] = bad
        return data, None, path
    if mutation == "unknown_key":
        unknown = path.rsplit(".", 1)[0] + ".no_such_key" if "." in path else "no_such_section"
        if where == "overlay":
            return data, yaml.safe_dump(nested(unknown, 1)), unknown
        target, last = parent_and_key(data, unknown) if "." in unknown else (data, unknown)
        target[last] = 1
        return data, None, unknown
    del parent[key]  # missing: only params.yaml can drop a key
    return data, None, path


def accepted_empty(params: dict[str, Any], path: str) -> bool:
    """Keys whose removal is legal (an empty mapping or an optional value): not a fault."""
    parent, key = parent_and_key(params, path)
    return parent[key] in ({}, [], None)


def run(params_path: Path, cases: int, seed: int) -> ConfigFuzzFigures:
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    paths = leaves(params)
    rng = random.Random(seed)
    figures = ConfigFuzzFigures()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        while figures.cases < cases:
            path, mutation, where = rng.choice(paths), rng.choice(MUTATIONS), rng.choice(WHERE)
            free_form = any(path.startswith(prefix + ".") for prefix in FREE_FORM)
            if mutation in ("missing", "unknown_key") and (free_form or accepted_empty(params, path)):
                continue
            data, overlay, must_name = case(params, path, mutation, where)
            (root / "params.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
            overlays: tuple[Path, ...] = ()
            if overlay is not None:
                (root / "ov.yaml").write_text(overlay, encoding="utf-8")
                overlays = (root / "ov.yaml",)
            figures.cases += 1
            try:
                load_config(root / "params.yaml", overlays)
            except ConfigError as err:
                if must_name in str(err):
                    figures.named += 1
                elif len(figures.examples) < 5:
                    figures.examples.append(f"{mutation} {path} ({where}): {str(err)[:160]}")
                continue
            except Exception as err:  # noqa: BLE001 - counted: the figure is that none happen
                figures.other_errors += 1
                if len(figures.examples) < 5:
                    figures.examples.append(f"{mutation} {path} ({where}): {type(err).__name__}: {err}"[:200])
                continue
            figures.loaded += 1
            if len(figures.examples) < 5:
                figures.examples.append(f"{mutation} {path} ({where}): loaded without an error")
    return figures
