"""The one way to load the omni model: HF ``from_pretrained`` for Anole and for the tiny model alike.

``load_omni(cfg)`` reads ``model.pretrained_id`` (``source: pretrained``) or ``model.local_dir``
(``source: tiny``, written by the tokenizer stage), or an explicit ``model_dir`` (a fine-tuned
checkpoint), then verifies the token layout (``TokenLayout.from_model``) and fails loudly when it
does not hold. The VQ decoder, absent from HF checkpoints, is read from ``vq_decoder.safetensors``
beside the weights, else from ``model.vq_decoder_path`` (Anole's ``vqgan.ckpt``: a local file, or
``hf://<owner>/<repo>/<file>`` fetched with ``huggingface_hub.hf_hub_download``), else it is None.

Placement: on one process the model goes to ``run.device``. Under ``torchrun`` (``WORLD_SIZE`` > 1)
each process loads onto its own GPU, ``cuda:<LOCAL_RANK>``, never all onto the first one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, ChameleonForConditionalGeneration, PreTrainedTokenizerBase

from omni_r1.config import Config
from omni_r1.model.layout import LayoutError, TokenLayout
from omni_r1.model.vq import VQDecoder, build_decoder, load_decoder_state
from omni_r1.training.checkpoint import verify_folder

VQ_DECODER_FILE = "vq_decoder.safetensors"
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
