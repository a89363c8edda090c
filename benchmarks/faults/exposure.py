"""Secrets and exposure: fake keys in the environment must not reach any written file; code
must load checkpoints without pickle; published servers must bind loopback by default.

- :func:`leaks` scans every file under the given roots (MLflow databases and artifacts, stage
  logs, DVC files, params, the report) for the secret values, as bytes.
- :func:`unsafe_loads` scans the project's Python files: every ``torch.load`` must pass
  ``weights_only=True``; ``pickle.load(s)`` and ``torch.load`` without it are reported.
- :func:`exposed_binds` scans the compose file: every published port must bind
  ``${BIND_ADDRESS:-127.0.0.1}`` (loopback unless told otherwise); and the Python code must not
  bind ``0.0.0.0``.
"""

from __future__ import annotations

import ast
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

# Distinctive fake secrets put into the environment of the campaign's runs.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAULTSCAMPAIGN01",
    "AWS_SECRET_ACCESS_KEY": "faults/Campaign+Secret+Key+0123456789abcdef",
    "OPENAI_API_KEY": "sk-faults-campaign-judge-key-0123456789",
}
CODE_FOLDERS = ("omni_r1", "flows", "benchmarks")
LOOPBACK_DEFAULT = "${BIND_ADDRESS:-127.0.0.1}"


def leaks(roots: Iterable[Path], secrets: Mapping[str, str]) -> list[str]:
    """``"<file>: <variable>"`` for every file holding a secret's value."""
    found = []
    needles = {name: value.encode() for name, value in secrets.items()}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, needle in needles.items() if needle in data]
    return found


def _keyword_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def unsafe_loads(repo: Path) -> list[str]:
    """``"<file>:<line>: <call>"`` for pickle loads and ``torch.load`` without ``weights_only=True``."""
    found = []
    for folder in CODE_FOLDERS:
        for path in sorted((repo / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
                call = f"{owner}.{node.func.attr}"
                if call == "torch.load" and not _keyword_true(node, "weights_only"):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: torch.load without weights_only=True")
                if call in {"pickle.load", "pickle.loads", "dill.load", "joblib.load"}:
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: {call}")
    return found


def published_ports(repo: Path) -> list[tuple[str, str]]:
    """``(service, host address)`` of every published port of ``infra/compose.yaml``."""
    compose = yaml.safe_load((repo / "infra" / "compose.yaml").read_text(encoding="utf-8"))
    found = []
    for name, service in compose.get("services", {}).items():
        for entry in service.get("ports", []) or []:
            parts = str(entry).rsplit(":", 2)
            found.append((name, parts[0] if len(parts) == 3 else "<all interfaces>"))
    return found


def is_unspecified_address(value: object) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).is_unspecified
    except ValueError:
        return False


def exposed_binds(repo: Path) -> list[str]:
    """Published compose ports not bound to the loopback default, and any-address binds in Python code."""
    found = [
        f"infra/compose.yaml: {service} publishes on {host}"
        for service, host in published_ports(repo)
        if host != LOOPBACK_DEFAULT
    ]
    for folder in CODE_FOLDERS:
        for path in sorted((repo / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and is_unspecified_address(node.value):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: binds {node.value}")
    return found
