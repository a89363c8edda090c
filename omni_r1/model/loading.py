"""The one way to load the omni model: HF ``from_pretrained`` for Anole and for the tiny model alike.

``load_base(cfg)`` is what training starts from: the ``base`` stage's folder for the tiny
source, the hub model otherwise. ``load_omni(cfg)`` reads ``model.pretrained_id`` (``source: pretrained``) or ``model.local_dir``
(``source: tiny``, written by the tokenizer stage), or an explicit ``model_dir`` (a fine-tuned
checkpoint), then verifies the token layout (``TokenLayout.from_model``) and fails loudly when it
does not hold. The VQ decoder, absent from HF checkpoints, is read from ``vq_decoder.safetensors``
beside the weights, else from ``model.vq_decoder_path`` (Anole's ``vqgan.ckpt``: a local file, or
``hf://<owner>/<repo>/<file>`` fetched with ``huggingface_hub.hf_hub_download``), else it is None.

Placement: on one process the model goes to ``run.device``. Under ``torchrun`` (``WORLD_SIZE`` > 1)
each process loads onto its own GPU, ``cuda:<LOCAL_RANK>``, never all onto the first one.

Checkpoint folders (the tiny model, PeSFT and PeRPO checkpoints) are written by
:func:`write_folder_atomically`: under a temporary name beside the final one, with
``checksums.json`` (sha256 and size per file) written last, fsynced, then renamed into place, so
a kill at any point leaves the previous folder or none, never a half-written one.
:func:`load_omni` (and the trainer-state loaders) call :func:`verify_folder` first: a truncated
or bit-flipped file raises :class:`CheckpointError` naming it instead of being used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, ChameleonForConditionalGeneration, PreTrainedTokenizerBase

from omni_r1.config import Config
from omni_r1.model.layout import LayoutError, TokenLayout
from omni_r1.model.vq import VQDecoder, build_decoder, load_decoder_state

VQ_DECODER_FILE = "vq_decoder.safetensors"
CHECKSUMS = "checksums.json"  # in every atomically written folder: sha256 and size of each other file
HASH_CHUNK = 1 << 20
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


@dataclass
class OmniModel:
    model: ChameleonForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    layout: TokenLayout
    vq_decoder: VQDecoder | None


HUB_PREFIX = "hf://"


def resolve_device(device: str, environ: Mapping[str, str] | None = None) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a CUDA device is ``cuda:<LOCAL_RANK>``.

    Args:
        device: ``run.device`` (``auto`` | ``cpu`` | ``cuda``).
        environ: the process environment (``os.environ`` when None); torchrun sets ``LOCAL_RANK``.
    """
    env = os.environ if environ is None else environ
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", int(env.get("LOCAL_RANK", "0")))
    return torch.device(device)


def resolve_vq_decoder_path(spec: str | None) -> Path | None:
    """``model.vq_decoder_path`` as a local file: ``hf://<owner>/<repo>/<file>`` is downloaded
    (or read from the hub cache) with ``hf_hub_download``; a plain path is returned as it is."""
    if spec is None:
        return None
    if not spec.startswith(HUB_PREFIX):
        return Path(spec)
    parts = spec[len(HUB_PREFIX) :].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"model.vq_decoder_path {spec!r}: expected hf://<owner>/<repo>/<file>")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=f"{parts[0]}/{parts[1]}", filename=parts[2]))


def model_source(cfg: Config, model_dir: Path | str | None = None) -> str:
    """The folder or hub id ``load_omni`` reads."""
    if model_dir is not None:
        return str(model_dir)
    return cfg.model.local_dir if cfg.model.source == "tiny" else cfg.model.pretrained_id


def load_omni(cfg: Config, model_dir: Path | str | None = None) -> OmniModel:
    """Load model, tokenizer, verified layout and VQ decoder.

    Args:
        cfg: uses ``model.source``, ``model.pretrained_id``, ``model.local_dir``, ``model.dtype``,
            ``model.vq_decoder_path`` and ``run.device``.
        model_dir: a checkpoint folder that replaces the configured source.

    Raises:
        FileNotFoundError: the tiny model folder is missing (run the tokenizer stage).
        CheckpointError: a file of a local folder does not match its ``checksums.json``.
        LayoutError: the vocabulary does not have the layout the method needs.
    """
    source = model_source(cfg, model_dir)
    if cfg.model.source == "tiny" and model_dir is None and not Path(source).is_dir():
        raise FileNotFoundError(f"{source}: tiny model not found; run `omni-r1 tokenizer` first")
    if Path(source).is_dir():
        verify_folder(source)  # checksums.json of an atomically written folder: corrupt files fail here
    device = resolve_device(cfg.run.device)
    model = ChameleonForConditionalGeneration.from_pretrained(
        source, dtype=DTYPES[cfg.model.dtype], device_map=str(device)
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    layout = verified_layout(model, tokenizer, source)
    beside = Path(source) / VQ_DECODER_FILE
    configured = None if beside.is_file() else resolve_vq_decoder_path(cfg.model.vq_decoder_path)
    decoder = load_vq_decoder(model, [beside, configured])
    return OmniModel(model=model, tokenizer=tokenizer, layout=layout, vq_decoder=decoder)


def load_base(cfg: Config) -> OmniModel:
    """The base model training starts from: ``base.out_dir`` (the ``base`` stage's tiny base that
    can draw) when ``model.source`` is tiny, else the configured pretrained model (Anole).

    Raises:
        FileNotFoundError: the tiny base folder is missing (run the base stage).
    """
    if cfg.model.source != "tiny":
        return load_omni(cfg)
    folder = Path(cfg.base.out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: tiny base not found; run `omni-r1 base` first")
    return load_omni(cfg, model_dir=folder)


def verified_layout(
    model: ChameleonForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, source: str
) -> TokenLayout:
    """``TokenLayout.from_model`` plus tokenizer/config agreement; errors name ``source``."""
    try:
        layout = TokenLayout.from_model(model.config, tokenizer)
    except LayoutError as err:
        raise LayoutError(f"{source}: {err}") from err
    if len(tokenizer) > model.config.vocab_size:
        raise LayoutError(f"{source}: tokenizer has {len(tokenizer)} tokens, model vocab_size {model.config.vocab_size}")
    return layout


def load_vq_decoder(
    model: ChameleonForConditionalGeneration, candidates: list[Path | str | None]
) -> VQDecoder | None:
    """The first existing candidate file loaded strictly into a ``VQDecoder`` on the model's device."""
    parameter = next(model.parameters())
    for candidate in candidates:
        if candidate is None or not Path(candidate).is_file():
            continue
        decoder = build_decoder(model.config.vq_config, load_decoder_state(candidate))
        return decoder.to(device=parameter.device, dtype=parameter.dtype)
    return None


def save_omni(omni: OmniModel, out_dir: Path | str, state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """``save_pretrained`` for model and tokenizer, plus ``vq_decoder.safetensors`` when present.

    ``state_dict``: the model's full weights when its parameters are sharded (FSDP), gathered
    by the caller; None saves the parameters the model holds.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    omni.model.save_pretrained(folder, state_dict=None if state_dict is None else dict(state_dict))
    omni.tokenizer.save_pretrained(folder)
    if omni.vq_decoder is not None:
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in omni.vq_decoder.state_dict().items()}
        save_file(state, str(folder / VQ_DECODER_FILE))
    return folder


# ---------------------------------------------------------------------------------------------
# Checkpoint folders: atomic writes and checksums
# ---------------------------------------------------------------------------------------------


class CheckpointError(RuntimeError):
    """A checkpoint folder that is missing a file or does not fit the model."""


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as stream:
                os.fsync(stream.fileno())
    for folder in [*sorted(p for p in root.rglob("*") if p.is_dir()), root]:
        _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """Write ``folder/checksums.json``: ``{relative path: {"sha256", "bytes"}}`` of every other file."""
    entries = {
        path.relative_to(folder).as_posix(): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    }
    (folder / CHECKSUMS).write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
    return entries


def verify_folder(directory: Path | str) -> int:
    """Check every file listed in ``checksums.json``; return how many were checked (0: no manifest).

    Raises:
        CheckpointError: the manifest is unreadable, or a listed file is missing, has another
            size or another sha256; the message names the file.
    """
    folder = Path(directory)
    manifest = folder / CHECKSUMS
    if not manifest.is_file():
        return 0
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))
        expected = {name: (entry["sha256"], int(entry["bytes"])) for name, entry in entries.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{manifest}: unreadable checksum manifest ({err})") from err
    for name, (sha256, size) in expected.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {CHECKSUMS} but missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, {CHECKSUMS} records {size} (truncated?)")
        if file_sha256(path) != sha256:
            raise CheckpointError(f"{path}: sha256 does not match {CHECKSUMS} (corrupt file)")
    return len(expected)


def recover_interrupted_write(final: Path) -> None:
    """Clean up after a writer killed inside :func:`write_folder_atomically`.

    Temporary folders of a killed write are removed. A kill between the two renames leaves
    no folder under the final name and the previous, complete one under ``.<name>.old-*``:
    it is renamed back; other ``.old-*`` folders are removed.
    """
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(final.parent.glob(f".{final.name}.old-*")):
        if not final.exists() and (old / CHECKSUMS).is_file():
            os.replace(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)


def write_folder_atomically(directory: Path | str, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a temporary sibling folder, add ``checksums.json``, fsync it,
    rename it to ``directory``.

    Args:
        directory: the final folder; an existing one is replaced only after ``write`` succeeded.
            Leftovers of an earlier, killed write are cleaned first (:func:`recover_interrupted_write`).
        write: fills the folder it is given.

    Returns:
        ``directory``.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_write(final)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        write_checksums(tmp)
        _fsync_tree(tmp)
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
