"""The one way to load the omni model: HF ``from_pretrained`` for Anole and for the tiny model alike.

``load_omni(cfg)`` reads ``model.pretrained_id`` (``source: pretrained``) or ``model.local_dir``
(``source: tiny``, written by the tokenizer stage), or an explicit ``model_dir`` (a fine-tuned
checkpoint), then verifies the token layout (``TokenLayout.from_model``) and fails loudly when it
does not hold. The VQ decoder, absent from HF checkpoints, is read from ``vq_decoder.safetensors``
beside the weights, else from ``model.vq_decoder_path`` (Anole's ``vqgan.ckpt``), else it is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, ChameleonForConditionalGeneration, PreTrainedTokenizerBase

from omni_r1.config import Config
from omni_r1.model.layout import LayoutError, TokenLayout
from omni_r1.model.vq import VQDecoder, build_decoder, load_decoder_state

VQ_DECODER_FILE = "vq_decoder.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


@dataclass
class OmniModel:
    model: ChameleonForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    layout: TokenLayout
    vq_decoder: VQDecoder | None


def resolve_device(device: str) -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        LayoutError: the vocabulary does not have the layout the method needs.
    """
    source = model_source(cfg, model_dir)
    if cfg.model.source == "tiny" and model_dir is None and not Path(source).is_dir():
        raise FileNotFoundError(f"{source}: tiny model not found; run `omni-r1 tokenizer` first")
    device = resolve_device(cfg.run.device)
    model = ChameleonForConditionalGeneration.from_pretrained(
        source, dtype=DTYPES[cfg.model.dtype], device_map=str(device)
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    layout = verified_layout(model, tokenizer, source)
    decoder = load_vq_decoder(model, [Path(source) / VQ_DECODER_FILE, cfg.model.vq_decoder_path])
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


def save_omni(omni: OmniModel, out_dir: Path | str) -> Path:
    """``save_pretrained`` for model and tokenizer, plus ``vq_decoder.safetensors`` when present."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    omni.model.save_pretrained(folder)
    omni.tokenizer.save_pretrained(folder)
    if omni.vq_decoder is not None:
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in omni.vq_decoder.state_dict().items()}
        save_file(state, str(folder / VQ_DECODER_FILE))
    return folder
