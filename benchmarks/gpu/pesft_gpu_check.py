"""PeSFT on one CUDA GPU: per-rank device placement, step time and peak memory of a tiny Chameleon.

Self-contained: needs only torch, transformers, accelerate and safetensors (no prefect, mlflow,
dvc or pydantic), so it runs on a GPU machine whose stack differs from the project's pins. The
tiny model is built here from transformers' real config classes at the paper's image shape
(512 px, 32x32 = 1024 codes per image) with a narrow decoder; the PeSFT loss (L_CE + L_pe, paper
§4.1) comes from ``omni_r1.training.losses`` and the image-logit-keeping forward from
``omni_r1.model.logits`` when they import, else from plain cross-entropy on the stock logits
(the script says which).

Run it twice:

    python benchmarks/gpu/pesft_gpu_check.py --out out/single
    torchrun --nproc_per_node 1 benchmarks/gpu/pesft_gpu_check.py --out out/torchrun --strategy fsdp

Each run loads the model the way ``omni_r1.model.loading`` does (``from_pretrained`` with
``device_map`` = ``resolve_device``: ``cuda:<LOCAL_RANK>``), trains a few steps with HF ``Trainer``
in bf16 and writes ``check.json`` (and prints it): where every parameter lives, the Trainer's
device, the strategy Accelerate ran, seconds per step and peak CUDA memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

NUM_CODES, IMAGE_START = 1024, 4  # image token ids [4, 4 + K)
EOI, BOI = IMAGE_START + NUM_CODES, IMAGE_START + NUM_CODES + 1
TEXT_START, VOCAB = BOI + 1, 4096


def image_token_name(code: int) -> str:
    """Chameleon's image-token naming: ``IMGIMG`` + the code's digits as letters + ``Z``."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def build_tiny(hidden: int, layers: int):
    """A random Chameleon at Anole's image shape (512 px, 32x32 grid) with a narrow decoder."""
    from transformers import (
        ChameleonConfig,
        ChameleonForConditionalGeneration,
        ChameleonVQVAEConfig,
    )

    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<eoss>": EOI, "<racm3:break>": BOI}
    vocabulary.update({image_token_name(c): IMAGE_START + c for c in range(NUM_CODES)})
    vocabulary.update({f"<text{t}>": t for t in range(TEXT_START, VOCAB)})
    vq = ChameleonVQVAEConfig(
        embed_dim=64, num_embeddings=NUM_CODES, latent_channels=64, resolution=512, base_channels=32,
        channel_multiplier=[1, 1, 2, 2, 4], num_res_blocks=1, attn_resolutions=[],
    )  # fmt: skip
    config = ChameleonConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=4096,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, vq_config=vq, vocabulary_map=vocabulary,
    )  # fmt: skip
    torch.manual_seed(0)
    return ChameleonForConditionalGeneration(config)


def placement() -> tuple[torch.device, str]:
    """The device ``omni_r1.model.loading.resolve_device('cuda')`` picks, and where it came from."""
    try:
        from omni_r1.model.loading import resolve_device

        return resolve_device("cuda"), "omni_r1.model.loading.resolve_device"
    except ImportError as err:  # the project's config stack (pydantic, yaml) is not installed
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), f"LOCAL_RANK (import failed: {err})"


class Sequences(torch.utils.data.Dataset):
    """Random PeSFT sequences: text prompt, one input image, answer text, one step image, EOS."""

    def __init__(self, count: int, text: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(count):
            words = lambda n: torch.randint(TEXT_START, VOCAB, (n,), generator=generator)  # noqa: E731
            codes = lambda: torch.randint(IMAGE_START, IMAGE_START + NUM_CODES, (NUM_CODES,), generator=generator)  # noqa: E731
            prompt = torch.cat([torch.tensor([0]), words(text), torch.tensor([BOI]), codes(), torch.tensor([EOI])])
            answer = torch.cat([words(text), torch.tensor([BOI]), codes(), torch.tensor([EOI]), words(8), torch.tensor([2])])
            ids = torch.cat([prompt, answer])  # [L]
            labels = ids.clone()
            labels[: prompt.shape[0]] = -100
            self.items.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class PesftLossModule(nn.Module):
    """The model plus W; forward returns L_CE + L_pe (project losses) or stock cross-entropy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.model.model.vqmodel.requires_grad_(False)
        self.projection = nn.Linear(model.config.hidden_size, model.config.vq_config.embed_dim)
        self.loss_source = "stock cross-entropy (omni_r1 losses not importable)"
        try:
            from omni_r1.model.layout import TokenLayout
            from omni_r1.model.logits import forward_logits, with_image_logits
            from omni_r1.training.losses import pesft_loss

            self.layout = TokenLayout(
                bos_id=0, pad_id=1, eos_id=2, boi_id=BOI, eoi_id=EOI, image_token_start=IMAGE_START,
                num_codes=NUM_CODES, grid_h=32, grid_w=32, image_size=512, reasoning_open_id=TEXT_START,
                reasoning_close_id=TEXT_START + 1, answer_open_id=TEXT_START + 2, answer_close_id=TEXT_START + 3,
                vocab_size=VOCAB,
            )  # fmt: skip
            self.model = with_image_logits(self.model)
            self._forward_logits, self._pesft_loss = forward_logits, pesft_loss
            self.loss_source = "omni_r1.training.losses.pesft_loss"
        except ImportError as err:
            self.loss_source += f": {err}"
            self._pesft_loss = None

    def forward(self, input_ids, attention_mask, labels, **kwargs):
        if self._pesft_loss is None:
            return {"loss": self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss}
        out = self._forward_logits(self.model, input_ids, attention_mask)
        codebook = self.model.model.vqmodel.quantize.embedding.weight
        parts = self._pesft_loss(
            out.logits, labels, out.hidden_states, self.projection, codebook, self.layout,
            perception_weight=1.0, alignment="next_token",
        )  # fmt: skip
        return {"loss": parts.total}


def strategy_args(strategy: str, layer_class: str) -> dict:
    if strategy == "fsdp":
        return {"fsdp": "full_shard auto_wrap",
                "fsdp_config": {"transformer_layer_cls_to_wrap": [layer_class], "use_orig_params": True}}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--text", type=int, default=200, help="text tokens per prompt and per answer")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    args.out.mkdir(parents=True, exist_ok=True)
    device, device_source = placement()
    folder = args.out / "tiny"
    if int(os.environ.get("RANK", "0")) == 0:
        build_tiny(args.hidden, args.layers).save_pretrained(folder)
    if torch.distributed.is_available() and "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl", device_id=device)
        torch.distributed.barrier()
    from transformers import ChameleonForConditionalGeneration

    model = ChameleonForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, device_map=str(device))
    loaded_on = sorted({str(p.device) for p in model.parameters()})
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = PesftLossModule(model).to(device)
    dataset = Sequences(args.batch * args.steps, args.text)

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    training_args = TrainingArguments(
        output_dir=str(args.out / "trainer"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=1e-4, bf16=True, logging_steps=1, save_strategy="no", report_to="none",
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
        **strategy_args(args.strategy, type(model.model.layers[0]).__name__),
    )  # fmt: skip
    torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(model=module, args=training_args, train_dataset=dataset, callbacks=[timer])
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    report = {
        "torch": torch.__version__, "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(device),
        "rank": int(os.environ.get("RANK", "0")), "local_rank": os.environ.get("LOCAL_RANK"),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")), "device_map": str(device), "device_source": device_source,
        "loaded_on": loaded_on, "trainer_device": str(training_args.device),
        "accelerate_distributed_type": str(trainer.accelerator.distributed_type), "fsdp": bool(trainer.is_fsdp_enabled),
        "trained_on": sorted({str(p.device) for p in trainer.model.parameters()}),
        "loss_source": module.loss_source, "parameters": sum(p.numel() for p in model.parameters()),
        "sequence_length": int(dataset[0]["input_ids"].shape[0]), "batch": args.batch,
        "gradient_checkpointing": args.gradient_checkpointing,
        "step_seconds": timer.times, "median_step_seconds": sorted(timer.times)[len(timer.times) // 2],
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30, "losses": losses,
    }  # fmt: skip
    (args.out / f"check_rank{report['rank']}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
