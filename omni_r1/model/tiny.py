"""The tiny omni model: a random Chameleon with Anole's vocabulary layout, a BPE text tokenizer and
a VQ autoencoder trained on the project's own images.

Vocabulary (ids), the same shape as Anole's with K codes instead of 8192:
``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, image tokens ``IMGIMG<letters>Z`` 4 .. 4+K-1
(codebook index = id - 4; the index's decimal digits written as letters A..J, as Chameleon's
``ChameleonImageVocabularyMapping`` decodes them), ``<eoss>`` (EOI) 4+K, ``<racm3:break>`` (BOI)
5+K, the four template tokens ``<reserved12856>``, ``<reserved12857>``, ``<reserved12866>``,
``<reserved12867>``, the ``<image>`` placeholder, then byte-level BPE text tokens learned from the
training texts. The tokenizer prepends ``<s>`` like Chameleon's. ``config.vocabulary_map`` is the
whole vocabulary (name → id), as in the Anole checkpoint.

Differences from Anole: K, grid, widths and depths come from ``model.tiny`` in params.yaml; the VQ
autoencoder is trained here (Anole's is a frozen pretrained VQGAN); the text tokenizer is a small
byte-level BPE instead of Chameleon's 65k vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    ChameleonConfig,
    ChameleonForConditionalGeneration,
    ChameleonVQVAEConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

from omni_r1.config import TinyModelConfig, TokenizerConfig
from omni_r1.model.images import pixels_to_images, preprocess_images
from omni_r1.model.layout import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    BOI_TOKEN,
    EOI_TOKEN,
    IMAGE_TOKEN_PREFIX,
    REASONING_CLOSE,
    REASONING_OPEN,
    TokenLayout,
)
from omni_r1.model.loading import OmniModel, save_omni, write_folder_atomically
from omni_r1.model.vq import VQDecoder
from omni_r1.model.vq_train import VQTrainSettings, evaluate_vq, reconstruct, train_vq
from omni_r1.trajectory import IMAGE_SLOT

HEAD_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
CONTROL_TOKENS = [EOI_TOKEN, BOI_TOKEN, REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, IMAGE_SLOT]
VQ_STATE_PREFIXES = ("model.vqmodel.encoder.", "model.vqmodel.quant_conv.", "model.vqmodel.quantize.")


def image_token_name(code: int) -> str:
    """``IMGIMG`` + the code's decimal digits as letters A..J + ``Z`` (e.g. 12 → ``IMGIMGBCZ``)."""
    return IMAGE_TOKEN_PREFIX + "".join(chr(ord("A") + int(digit)) for digit in str(code)) + "Z"


def special_tokens(num_codes: int) -> list[str]:
    """Every non-text token in id order: head, K image tokens, EOI, BOI, templates, ``<image>``."""
    return HEAD_TOKENS + [image_token_name(code) for code in range(num_codes)] + CONTROL_TOKENS


def train_text_tokenizer(
    texts: Sequence[str], num_codes: int, text_vocab_size: int, min_frequency: int
) -> PreTrainedTokenizerFast:
    """Byte-level BPE on ``texts`` behind Anole's special-token block.

    Args:
        texts: training corpus (may be empty: then only the 256 byte tokens exist).
        num_codes: K image tokens placed at ids 4 .. 4+K-1.
        text_vocab_size: text tokens (bytes + merges) after the special block.
        min_frequency: least count of a pair to merge.
    """
    specials = special_tokens(num_codes)
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=len(specials) + text_vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_vq_config(tiny: TinyModelConfig) -> ChameleonVQVAEConfig:
    """VQ config: ``image_size`` px, ``2^(len(multipliers)-1)`` downsampling (64 px, [1,1,2,2] → 8x8)."""
    return ChameleonVQVAEConfig(
        embed_dim=tiny.embed_dim,
        num_embeddings=tiny.num_codes,
        latent_channels=tiny.vq_latent_channels,
        resolution=tiny.image_size,
        base_channels=tiny.vq_base_channels,
        channel_multiplier=list(tiny.vq_channel_multiplier),
        num_res_blocks=tiny.vq_num_res_blocks,
        attn_resolutions=None,
    )


def tiny_chameleon_config(tiny: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> ChameleonConfig:
    return ChameleonConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vq_config=tiny_vq_config(tiny),
        vocabulary_map=tokenizer.get_vocab(),
    )


def fresh_vq(config: ChameleonVQVAEConfig, seed: int) -> tuple[ChameleonVQVAE, VQDecoder]:
    """Untrained VQ encoder/codebook and decoder with PyTorch's default initialisation.

    HF's ``_init_weights`` (normal, std 0.02) suits loading a pretrained VQGAN; training from
    scratch starts from the usual fan-in initialisation instead.
    """
    torch.manual_seed(seed)
    vqmodel, decoder = ChameleonVQVAE(config), VQDecoder(config)
    for module in [*vqmodel.modules(), *decoder.modules()]:
        if module is not vqmodel and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return vqmodel.eval(), decoder.eval()


def assemble_tiny(
    tiny: TinyModelConfig,
    tokenizer: PreTrainedTokenizerFast,
    vqmodel: ChameleonVQVAE,
    decoder: VQDecoder,
    seed: int,
) -> OmniModel:
    """A random tiny Chameleon around the given (trained) VQ model, layout verified."""
    config = tiny_chameleon_config(tiny, tokenizer)
    torch.manual_seed(seed)
    model = ChameleonForConditionalGeneration(config)
    model.model.vqmodel.load_state_dict(vqmodel.state_dict(), strict=True)
    model.eval()
    layout = TokenLayout.from_model(model.config, tokenizer)
    return OmniModel(model=model, tokenizer=tokenizer, layout=layout, vq_decoder=decoder.eval())


@dataclass
class TinyTrainingResult:
    omni: OmniModel
    metrics: dict[str, float]
    history: list[dict[str, float]]
    samples: list[tuple[Image.Image, Image.Image]]  # (original, reconstruction), held-out


def split_heldout(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffled ``(train, heldout)`` indices; at least one image on each side when count >= 2."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    heldout = min(max(1, round(count * fraction)), count - 1) if count >= 2 else 0
    return order[heldout:], order[:heldout]


def train_tiny(
    images: Sequence[Image.Image],
    texts: Sequence[str],
    tiny: TinyModelConfig,
    params: TokenizerConfig,
    seed: int,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TinyTrainingResult:
    """Train both tokenizers and build the tiny model around them.

    Args:
        images: training images (any size; resized to ``tiny.image_size``); a held-out share
            (``params.heldout_fraction``) is kept for PSNR.
        texts: BPE corpus.
        tiny: model shape; params: training knobs; seed: all randomness.
        on_step: per VQ step callback ``(step, losses)``.

    Returns:
        The model, metrics (``psnr``, ``codebook_usage``, ``train_steps``, ...), loss history and
        held-out (original, reconstruction) pairs.
    """
    if len(images) < 2:
        raise ValueError(f"train_tiny: need at least 2 images, got {len(images)}")
    tokenizer = train_text_tokenizer(texts, tiny.num_codes, tiny.text_vocab_size, params.bpe_min_frequency)
    pixels = preprocess_images(images, tiny.image_size)  # [N, 3, S, S]
    train_ids, heldout_ids = split_heldout(len(images), params.heldout_fraction, seed)
    vqmodel, decoder = fresh_vq(tiny_vq_config(tiny), seed)
    settings = VQTrainSettings(params.vq_steps, params.vq_batch_size, params.vq_lr,
                               params.commitment_beta, params.restart_every,
                               params.vq_crop_size, seed)
    history = train_vq(vqmodel, decoder, pixels[train_ids], settings, on_step)
    heldout = pixels[heldout_ids[: params.psnr_samples]]  # [M, 3, S, S]
    scores = evaluate_vq(vqmodel, decoder, heldout)
    metrics = {
        "psnr": scores["psnr"],
        "codebook_usage": scores["codebook_usage"],
        "train_steps": float(params.vq_steps),
        "train_images": float(len(train_ids)),
        "heldout_images": float(heldout.shape[0]),
        "final_loss": history[-1]["loss"],
        "text_vocab_size": float(len(tokenizer) - len(special_tokens(tiny.num_codes))),
    }
    shown = heldout[: params.sample_grid]
    reconstruction, _ = reconstruct(vqmodel, decoder, shown)
    samples = list(zip(pixels_to_images(shown), pixels_to_images(reconstruction), strict=True))
    omni = assemble_tiny(tiny, tokenizer, vqmodel, decoder, seed)
    return TinyTrainingResult(omni=omni, metrics=metrics, history=history, samples=samples)


def save_tiny(omni: OmniModel, out_dir: Path | str) -> Path:
    """Save model, tokenizer and VQ decoder so ``load_omni`` reads them back (see ``save_omni``).

    Written atomically with a ``checksums.json`` (:func:`write_folder_atomically`): a kill
    while saving leaves the previous folder (or none), never a half-written one.
    """
    return write_folder_atomically(out_dir, lambda folder: save_omni(omni, folder))


def tokenizer_hash(model_dir: Path | str) -> str:
    """sha256 over the stored bytes of the VQ encoder, ``quant_conv`` and codebook tensors.

    These are the weights that decide an image's codes, so the hash is the cache key of encoded
    images. Reads ``model.safetensors`` (or the shards listed in ``model.safetensors.index.json``)
    without loading tensors; a hub id is resolved through the local Hugging Face cache/download.
    The VQ config (resolution, K) is hashed too.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(model_dir), allow_patterns=["*.json", "*.safetensors"]))
    digest = hashlib.sha256()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    digest.update(json.dumps(config.get("vq_config", {}), sort_keys=True).encode())
    for file, names in _vq_tensor_files(folder).items():
        header, data_start = _safetensors_header(file)
        with file.open("rb") as handle:
            for name in sorted(names):
                begin, end = header[name]["data_offsets"]
                handle.seek(data_start + begin)
                digest.update(name.encode())
                digest.update(handle.read(end - begin))
    return digest.hexdigest()


def _vq_tensor_files(folder: Path) -> dict[Path, list[str]]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    else:
        single = folder / "model.safetensors"
        if not single.exists():
            raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
        header, _ = _safetensors_header(single)
        weight_map = {name: single.name for name in header if name != "__metadata__"}
    files: dict[Path, list[str]] = {}
    for name, file in weight_map.items():
        if name.startswith(VQ_STATE_PREFIXES):
            files.setdefault(folder / file, []).append(name)
    if not files:
        raise ValueError(f"{folder}: no VQ encoder/codebook tensors ({', '.join(VQ_STATE_PREFIXES)})")
    return dict(sorted(files.items()))


def _safetensors_header(file: Path) -> tuple[dict, int]:
    with file.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    return header, 8 + size
