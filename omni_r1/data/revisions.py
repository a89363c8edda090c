"""Source revisions: what params.yaml pins and what the hub or a local copy holds now.

A pin (``data.revisions.<source>``) is the hub dataset's commit sha, or ``sha256:<hex>`` of a
local copy (``data.local_paths.<source>``: the file's SHA-256, or the tree hash of a folder,
:func:`omni_r1.tracking.tree_sha256`). The prepare stage reads hub sources at the pinned
commit and refuses a local copy whose content no longer matches its pin, so a DVC run is
tied to one revision of every source; the scheduled ``retrain`` flow is what moves a pin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omni_r1.data.records import DataError
from omni_r1.tracking import file_sha256, tree_sha256

LOCAL_PREFIX = "sha256:"


def local_revision(path: Path | str) -> str:
    """``sha256:<hex>`` of a local copy (a file, or every file of a folder)."""
    path = Path(path)
    if path.is_file():
        return LOCAL_PREFIX + file_sha256(path)
    if path.is_dir():
        return LOCAL_PREFIX + tree_sha256(path)
    raise DataError(str(path), "-", "path", "missing_file", "no such file or folder")


def hub_revision(hub_id: str) -> str:
    """The commit sha of the hub dataset's default branch now (a network call)."""
    from huggingface_hub import HfApi

    return str(HfApi().dataset_info(hub_id).sha)


def current_revision(name: str, hub_id: str, local_path: str | None, root: Path) -> str:
    """What source ``name`` holds now: its local copy's hash, else its hub commit."""
    if local_path is not None:
        return local_revision(root / local_path)
    return hub_revision(hub_id)


def changed_revisions(pinned: Mapping[str, str], current: Mapping[str, str]) -> dict[str, str]:
    """``{source: new revision}`` for every source whose pin differs from what it holds now."""
    return {name: revision for name, revision in sorted(current.items()) if pinned.get(name) != revision}


def check_local_pin(name: str, local_path: str, pin: str | None) -> None:
    """Refuse a local copy that no longer matches its pin (no pin: nothing to check)."""
    if pin is None:
        return
    found = local_revision(local_path)
    if found != pin:
        raise DataError(
            local_path, "-", f"data.revisions.{name}", "revision_mismatch",
            f"content is {found}, pinned {pin}; update the pin (the retrain flow does) or restore the copy",
        )  # fmt: skip
