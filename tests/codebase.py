"""Static views of the code base for structure tests: import graph, import closure, config reads.

Everything here reads source files with :mod:`ast`; nothing is imported or executed, so a
broken module shows up as a test failure, not as a collection error. The import closure of a
stage module is the set of project files whose change can change what that stage does, which
is what a DVC stage's ``deps`` must cover.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("omni_r1", "flows")


def module_files(package: str, root: Path = REPO_ROOT) -> dict[str, Path]:
    """``{"omni_r1.training.rollout": path, ...}`` for every ``.py`` file of a package."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement of the file names (function-level imports too).

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a submodule).
    """
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module → the modules of ``files`` it imports (itself excluded)."""
    return {
        module: {name for name in imported_names(path, module) if name in files} - {module}
        for module, path in files.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def import_closure(module: str, graph: Mapping[str, Iterable[str]]) -> set[str]:
    """``module`` and every module it imports, directly or not (parent packages included)."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        pending.extend(graph.get(current, ()))
        parts = current.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in graph)
    return seen


def stage_closures(root: Path = REPO_ROOT) -> dict[str, set[Path]]:
    """For every ``omni_r1/stages/<name>.py``: the project files its import closure holds."""
    files = module_files("omni_r1", root)
    graph = import_graph(files)
    return {
        module.rsplit(".", 1)[1]: {files[name] for name in import_closure(module, graph)}
        for module in files
        if module.startswith("omni_r1.stages.")
    }


# --------------------------------------------------------------------------- params.yaml reads


def config_leaves(
    model: type[BaseModel], prefix: str = ""
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(dotted path, names of its section)`` for every field that is not a section itself.

    A section's names are its key in the parent (``perpo``) and its model class
    (``PerpoConfig``); the top level has none.
    """
    section = (prefix.rstrip(".").rsplit(".", 1)[-1], model.__name__) if prefix else ()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from config_leaves(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", section


def attribute_reads(sources: Iterable[Path]) -> list[set[str]]:
    """Per file: attribute names read (``x.name``), names used (``ExecutorConfig``), and
    string constants (``getattr(cfg, "name")``, a string annotation)."""
    reads = []
    for path in sources:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
        reads.append(names)
    return reads


def unread_leaves(model: type[BaseModel], sources: Iterable[Path]) -> list[str]:
    """Leaves of ``model`` that no source reads: ``section.key`` counts as read in a file
    that reads the name ``key`` and names its section (by key or by model class)."""
    reads = attribute_reads(sources)
    unread = []
    for path, section in config_leaves(model):
        key = path.rsplit(".", 1)[-1]
        named = [names for names in reads if key in names]
        if not any(not section or set(section) & names for names in named):
            unread.append(path)
    return unread


def _defaults(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[tuple[str, ast.expr]]:
    args = function.args
    positional = args.posonlyargs + args.args
    yield from zip(
        [a.arg for a in positional[len(positional) - len(args.defaults) :]], args.defaults, strict=True
    )
    yield from ((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)


def restated_defaults(sources: Iterable[Path], params: Mapping[str, Any]) -> list[str]:
    """``file:line function(name=value)`` for each parameter default equal to the params.yaml
    value of a key of the same name (``name`` or ``<anything>_name``)."""
    by_key: dict[str, list[Any]] = {}
    for dotted, value in params.items():
        by_key.setdefault(dotted.rsplit(".", 1)[-1], []).append(value)
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for name, default in _defaults(node):
                try:
                    value = ast.literal_eval(default)
                except ValueError:
                    continue
                values = [
                    v for key, vs in by_key.items() if key == name or key.endswith(f"_{name}") for v in vs
                ]
                if value is not None and any(type(v) is type(value) and v == value for v in values):
                    found.append(f"{path.name}:{node.lineno} {node.name}({name}={value!r})")
    return found


# --------------------------------------------------------------------------- layers

# Lower layers never import higher ones: a module may import its own package or a package of
# a lower layer. The library's packages, bottom to top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("omni_r1", "omni_r1.config", "omni_r1.trajectory"),
    ("omni_r1.grid", "omni_r1.storage", "omni_r1.console"),
    ("omni_r1.executor", "omni_r1.gallery", "omni_r1.tracking"),
    ("omni_r1.data",),
    ("omni_r1.model",),
    ("omni_r1.rewards",),
    ("omni_r1.rendering",),
    ("omni_r1.training", "omni_r1.eval", "omni_r1.study"),
    ("omni_r1.verl", "omni_r1.serving", "omni_r1.planning"),
    ("omni_r1.stages", "omni_r1.results"),
    ("omni_r1.cli",),
)


def layer_of(module: str) -> tuple[int, str]:
    """``(layer index, owning unit)`` of a module: the longest unit of :data:`LAYERS` it is in."""
    best: tuple[int, str] | None = None
    for index, units in enumerate(LAYERS):
        for unit in units:
            inside = module == unit or module.startswith(f"{unit}.")
            if inside and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    if best is None:
        raise KeyError(f"{module}: in no layer of LAYERS")
    return best


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``"a -> b"`` for each import of a unit on the same or a higher layer than the importer's."""
    found = []
    for module, imported in sorted(graph.items()):
        layer, unit = layer_of(module)
        for name in sorted(imported):
            other_layer, other_unit = layer_of(name)
            if other_unit != unit and other_layer >= layer:
                found.append(f"{module} -> {name}")
    return found
