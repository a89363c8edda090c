"""Every DVC stage depends on exactly the omni_r1 code it runs.

A stage's command is ``omni-r1 <name>``, which runs ``omni_r1/stages/<name>.py``. Its code
is the import closure of that module inside ``omni_r1/`` (tests/codebase.py: a static walk
over the AST of each file, function-local and relative imports included, plus the
``__init__.py`` of every package on the way when it holds code; an empty one runs nothing).
Each module of the closure must be covered by a code dependency of the stage in dvc.yaml
(the file itself or a folder above it), and every ``omni_r1`` dependency must cover at least
one module of the closure, so a stale or missing dependency fails with the paths to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from codebase import REPO_ROOT as ROOT
from codebase import stage_closures

PACKAGE = "omni_r1"


def code_closure(stage_name: str) -> set[Path]:
    """Every omni_r1 file that running stage module ``stage_name`` may execute (the import
    closure of :func:`codebase.stage_closures`), less ``__init__.py`` files that hold no code."""
    return {
        path for path in stage_closures(ROOT)[stage_name]
        if path.name != "__init__.py" or path.read_text(encoding="utf-8").strip()
    }  # fmt: skip


PIPELINE_FILES = ("dvc.yaml", "study/dvc.yaml")  # the default graph, and the study experiment


def stage_definitions() -> dict[str, dict]:
    stages = {}
    for name in PIPELINE_FILES:
        stages.update(yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))["stages"])
    return stages


def stage_module(stage: dict) -> str:
    """The stage module a dvc.yaml command runs: ``omni-r1 <name>`` → ``omni_r1/stages/<name>.py``."""
    body = stage.get("do", stage)
    words = body["cmd"].split()
    assert words[0] == "omni-r1", body["cmd"]
    return words[1].replace("-", "_")


def code_deps(stage: dict) -> list[str]:
    deps = stage.get("do", stage).get("deps", [])
    return [dep for dep in deps if dep == PACKAGE or dep.startswith(f"{PACKAGE}/")]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(dep) or Path(dep) in rel.parents for dep in deps)


def test_closure_follows_relative_and_local_imports():
    # omni_r1/data/__init__.py re-exports with relative imports; the closure of the
    # prepare stage must reach through them to the record schema.
    closure = {p.relative_to(ROOT).as_posix() for p in code_closure("prepare")}
    assert "omni_r1/data/records.py" in closure
    assert "omni_r1/config.py" in closure


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_stage_code_deps_match_import_closure(name):
    stage = stage_definitions()[name]
    deps = code_deps(stage)
    closure = code_closure(stage_module(stage))
    missing = sorted(p.relative_to(ROOT).as_posix() for p in closure if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {name!r} lacks code deps: {missing}"
    unused = sorted(dep for dep in deps if not any(covered(p, [dep]) for p in closure))
    assert not unused, f"dvc.yaml stage {name!r} depends on code it never imports: {unused}"


def test_tracks_and_save_steps_come_from_params(tmp_path):
    """Changing the tracks or save steps in params.yaml changes the stages DVC builds."""
    import shutil
    import subprocess

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["pesft"]["datasets"] = {"omni_r1": "sft_train", "extra_track": "sft_train"}
    params["perpo"]["save_steps"] = [5, 7]
    params["eval"]["ablation_steps"] = [7]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()  # fmt: skip
    expected = {"pesft@extra_track", "perpo@extra_track", "evaluate@extra_track-7", "evaluate_no_perception@7"}
    assert expected <= set(listed)
    assert "evaluate_no_perception@5" not in listed  # the ablation is evaluated at eval.ablation_steps only
    assert not [name for name in listed if "omni_r1_zero" in name.split("@")[-1] or name.endswith("-10")]


def test_the_study_is_outside_the_default_graph():
    """`dvc repro` / `dvc exp run` with no target reproduce ``dvc.yaml`` (DVC 3's default target);
    the study stage lives in ``study/dvc.yaml``, runs from the repository root, and is reached when named."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        default = [stage.addressing for stage in repo.stage.collect("dvc.yaml", with_deps=True)]
        study = repo.stage.collect("study/dvc.yaml", with_deps=True)
    assert default and not [name for name in default if name.startswith("study")]
    named = {stage.addressing: stage for stage in study}
    assert Path(named["study/dvc.yaml:study"].wdir) == ROOT
    assert "prepare" in named and "tokenizer" in named  # its inputs come from the default graph
