"""One PeRPO step on the local engine vs one TRL ``GRPOTrainer`` step, same model and batch.

Both train the small random Chameleon of ``bench_generation`` (hidden 128, 2 layers,
vocabulary ~2.1K) on CPU with one torch thread: 4 prompts of 16 tokens, 4 responses each,
exactly 64 new tokens per response (``min_new_tokens`` = ``max_new_tokens``), T = 1.0,
top-p 0.95, one optimizer step on all 16 responses, clip 0.2 / 0.28, no KL term (TRL's
default β = 0, so neither side runs a reference model), the same reward function (on the
decoded text, varied within groups so the local group filter keeps every group).
Text-only: upstream Chameleon suppresses image logits, so TRL cannot emit image tokens;
the local run is held to text too (``max_images = 0``).

A step is timed from its start to the optimizer step, generation included: locally with
``PerpoTrainer.step``, in TRL between the ``on_step_begin`` and ``on_step_end`` callbacks.
The first step of each is a warm-up; the median of the others is compared.

Goal: local/TRL ≤ 1.0.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence

import torch

from benchmarks.bench_generation import small_model
from omni_r1.config import load_config
from omni_r1.model.generation import decode_interleaved
from omni_r1.rewards.registry import RewardBatch
from omni_r1.training.perpo import PerpoTrainer
from omni_r1.training.rollout import PromptItem

PROMPTS, N, PROMPT_LENGTH, NEW_TOKENS, STEPS = 4, 4, 16, 64, 6


def text_tokenizer():
    """A word-level tokenizer whose ids are the model's ids (``text<i>`` words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from benchmarks.bench_generation import VOCABULARY

    backend = Tokenizer(
        models.WordLevel({name: i for i, name in enumerate(VOCABULARY)}, unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def reward_of(text: str) -> float:
    """A cheap reward that differs between responses: word count modulo 3, halved."""
    return (len(text.split()) % 3) / 2


def prompt_texts() -> list[str]:
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(0, 1000, (PROMPTS, PROMPT_LENGTH - 1), generator=generator)
    return [" ".join(f"text{int(w)}" for w in row) for row in words]


def local_step_seconds(tokenizer) -> list[float]:
    model, layout = small_model()
    cfg = load_config("params.yaml")
    cfg = cfg.model_copy(update={
        "perpo": cfg.perpo.model_copy(update={
            "gen_batch_size": PROMPTS, "train_batch_size": PROMPTS, "max_gen_batches": 1, "rollout_n": N,
            "max_new_tokens": NEW_TOKENS, "ppo_mini_batch_size": PROMPTS, "micro_batch_size": PROMPTS * N, "rollout_batch_size": PROMPTS * N,
            "ppo_epochs": 1, "warmup_steps": 0}),
        "generation": cfg.generation.model_copy(update={"temperature": 1.0, "top_p": 0.95, "max_images_per_answer": 0}),
        "grpo": cfg.grpo.model_copy(update={"kl_loss_coef": 0.0, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28}),
    })  # fmt: skip
    prompts = [
        PromptItem(f"p{i}", torch.tensor([layout.bos_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]),
                   "0", (), None, text, (), None)
        for i, text in enumerate(prompt_texts())
    ]  # fmt: skip

    def scorer(texts: Sequence[str], owners, response_ids, response_mask) -> RewardBatch:
        reward = torch.tensor([reward_of(text) + 2.0 * (row % 2) for row, text in enumerate(texts)])
        nan = torch.full_like(reward, float("nan"))
        return RewardBatch(
            reward,
            reward,
            reward,
            nan,
            torch.zeros_like(reward, dtype=torch.bool),
            [""] * len(texts),
        )

    trainer = PerpoTrainer(
        model, None, tokenizer, layout, prompts, cfg, write_model=lambda folder: None, scorer=scorer
    )
    trainer.settings.sampling["min_new_tokens"] = NEW_TOKENS
    seconds = []
    for _ in range(STEPS):
        started = time.perf_counter()
        metrics = trainer.step()
        seconds.append(time.perf_counter() - started)
        assert (
            metrics["filter/kept_groups"] == PROMPTS and metrics["response/length"] == NEW_TOKENS
        ), metrics
    assert (
        decode_interleaved(tokenizer, layout, trainer.last_responses[0].response_ids)[1].shape[0]
        == 0
    )
    return seconds


def trl_step_seconds(tokenizer) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, _ = small_model()
    seconds: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - self.started)

    def trl_reward(completions, **kwargs) -> list[float]:
        return [reward_of(text) + 2.0 * (row % 2) for row, text in enumerate(completions)]

    with tempfile.TemporaryDirectory() as out_dir:
        args = GRPOConfig(
            output_dir=out_dir, use_cpu=True, max_steps=STEPS, per_device_train_batch_size=PROMPTS * N,
            num_generations=N, max_completion_length=NEW_TOKENS, temperature=1.0, top_p=0.95,
            generation_kwargs={"min_new_tokens": NEW_TOKENS}, beta=0.0, epsilon=0.2, epsilon_high=0.28,
            loss_type="grpo", learning_rate=2e-4, max_grad_norm=1.0, report_to=[], save_strategy="no",
            logging_steps=1000, disable_tqdm=True, seed=0, shuffle_dataset=False, dataloader_num_workers=0, bf16=False,
        )  # fmt: skip
        dataset = Dataset.from_dict({"prompt": prompt_texts()})
        trainer = GRPOTrainer(
            model=model, reward_funcs=trl_reward, args=args, train_dataset=dataset,
            processing_class=tokenizer, callbacks=[StepTimer()],
        )  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer.train()  # quiet: TRL's progress bar and log lines
    return seconds


def main() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = text_tokenizer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            local = local_step_seconds(tokenizer)
            trl = trl_step_seconds(tokenizer)
    finally:
        torch.set_num_threads(threads)
    local_median, trl_median = statistics.median(local[1:]), statistics.median(trl[1:])
    print(
        f"perpo_step: local/trl = {local_median / trl_median:.2f}x (goal <= 1.0) "
        f"[{PROMPTS} prompts x {N} responses, {NEW_TOKENS} new tokens, text-only, "
        f"local {local_median * 1e3:.0f} ms, trl {trl_median * 1e3:.0f} ms per step]"
    )


if __name__ == "__main__":
    main()
