"""The import graph of the library: acyclic, layered, free of Prefect and of ``flows/``.

Also the import closure of every stage module, the files whose change can change a stage
(what its DVC ``deps`` must cover).
"""

from __future__ import annotations

from codebase import (
    REPO_ROOT,
    find_cycle,
    import_closure,
    import_graph,
    imported_names,
    module_files,
    stage_closures,
    upward_imports,
)


def library_graph() -> dict[str, set[str]]:
    return import_graph(module_files("omni_r1"))


def test_library_imports_form_no_cycle() -> None:
    assert find_cycle(library_graph()) is None


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(library_graph()) == []


def test_an_upward_import_is_reported() -> None:
    graph = {"omni_r1.model.loading": {"omni_r1.training.perpo", "omni_r1.config"}}
    assert upward_imports(graph) == ["omni_r1.model.loading -> omni_r1.training.perpo"]


def test_library_imports_neither_prefect_nor_flows() -> None:
    offending = {
        module: sorted(n for n in imported_names(path, module) if n.split(".")[0] in {"prefect", "flows"})
        for module, path in module_files("omni_r1").items()
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_stage_closures_hold_what_each_stage_runs() -> None:
    closures = stage_closures()
    relative = {
        stage: {str(path.relative_to(REPO_ROOT)) for path in paths} for stage, paths in closures.items()
    }
    assert set(relative) >= {"prepare", "encode", "pesft", "perpo", "evaluate", "gallery"}
    assert {"omni_r1/training/rollout.py", "omni_r1/rewards/perception.py", "omni_r1/config.py"} <= relative["perpo"]
    assert {"omni_r1/grid.py", "omni_r1/data/action_scenes.py"} <= relative["gallery"]
    assert "omni_r1/training/perpo.py" not in relative["gallery"]
    assert all(f"omni_r1/stages/{stage}.py" in files for stage, files in relative.items())


def test_closure_follows_imports_transitively() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set(), "p.d": {"p.a"}, "p": set()}
    assert import_closure("p.a", graph) == {"p", "p.a", "p.b", "p.c"}
