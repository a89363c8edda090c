"""params.yaml → verl's hydra overrides, and the checks that ``perpo.engine: verl`` needs.

:func:`verl_overrides` is the one mapping of the ``perpo``, ``grpo``, ``reward`` and
``generation`` sections onto verl 0.9.1's ``ppo_trainer`` config (paper Table 6 through
``params/paper.yaml``): GRPO advantages, DAPO's group filter on accuracy with refill
(``algorithm.filter_groups``, ``data.gen_batch_size``), clip-higher PPO, k3 KL loss to the
reference, entropy bonus, the optimiser and the rollout sampling. The project's own pieces
enter through verl's extension points: the reward manager (``reward.reward_manager``,
importlib source), the dataset class (``data.custom_cls``), the agent loop
(``actor_rollout_ref.rollout.agent``) and the unmasked Chameleon (``model.external_lib``).
The reward section itself travels under a top-level ``omni_r1`` key that the reward manager
reads (verl passes its whole config to the reward manager).

Where verl differs from the local engine and no key can bridge it, :func:`omni_r1.config.check_verl_settings`
refuses the configuration at load time with a message naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import Any

from omni_r1.config import Config

FILTER_METRIC_KEYS = {"accuracy": "acc", "reward": "reward"}  # algorithm.filter_groups.metric

REWARD_MANAGER_MODULE = "pkg://omni_r1.verl.reward"
REWARD_MANAGER_CLASS = "OmniRewardManager"
DATASET_MODULE = "pkg://omni_r1.verl.dataset"
DATASET_CLASS = "OmniRLHFDataset"
ACTOR_EXTERNAL_LIB = "omni_r1.verl.actor"
AGENT_LOOP_NAME = "omni_interleaved"


def save_frequency(save_steps: list[int]) -> int:
    """``trainer.save_freq``: every listed step is a multiple of it (their gcd)."""
    return reduce(math.gcd, save_steps)


@dataclass(frozen=True)
class VerlPaths:
    """Where the job finds its inputs and writes its checkpoints, as the cluster sees them."""

    model_dir: str  # the PeSFT checkpoint (HF layout, load_omni folder)
    train_files: str  # RLHF parquet
    val_files: str
    checkpoint_dir: str  # trainer.default_local_dir
    agent_loop_config: str  # YAML naming the agent loop class


def _actor_overrides(cfg: Config) -> dict[str, Any]:
    perpo, grpo = cfg.perpo, cfg.grpo
    actor = "actor_rollout_ref.actor"
    return {
        f"{actor}.ppo_mini_batch_size": perpo.ppo_mini_batch_size,
        f"{actor}.ppo_micro_batch_size_per_gpu": perpo.micro_batch_size,
        f"{actor}.ppo_epochs": perpo.ppo_epochs,
        f"{actor}.clip_ratio_low": grpo.clip_ratio_low,
        f"{actor}.clip_ratio_high": grpo.clip_ratio_high,
        f"{actor}.clip_ratio_c": grpo.clip_ratio_c,
        f"{actor}.loss_agg_mode": grpo.loss_agg_mode,
        f"{actor}.entropy_coeff": grpo.entropy_coeff,
        f"{actor}.calculate_entropy": True,  # logged as actor/entropy, as the local engine does
        f"{actor}.use_kl_loss": grpo.kl_loss_coef > 0,
        f"{actor}.kl_loss_coef": grpo.kl_loss_coef,
        f"{actor}.kl_loss_type": grpo.kl_loss_type,
        f"{actor}.optim.lr": perpo.learning_rate,
        f"{actor}.optim.betas": list(perpo.adam_betas),
        f"{actor}.optim.lr_warmup_steps": perpo.warmup_steps,
        f"{actor}.optim.lr_scheduler_type": "constant",  # linear warm-up, then constant
        f"{actor}.optim.weight_decay": perpo.weight_decay,
        f"{actor}.optim.clip_grad": perpo.max_grad_norm,
        f"{actor}.grad_clip": perpo.max_grad_norm,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": perpo.micro_batch_size,
    }


def _rollout_overrides(cfg: Config, paths: VerlPaths) -> dict[str, Any]:
    rollout, settings = "actor_rollout_ref.rollout", cfg.perpo.verl
    return {
        f"{rollout}.name": settings.rollout,
        f"{rollout}.n": cfg.perpo.rollout_n,
        f"{rollout}.temperature": cfg.generation.temperature,
        f"{rollout}.top_p": cfg.generation.top_p,
        f"{rollout}.top_k": -1,  # Table 6 samples with temperature and top-p only
        f"{rollout}.tensor_model_parallel_size": settings.tensor_parallel_size,
        f"{rollout}.gpu_memory_utilization": settings.gpu_memory_utilization,
        f"{rollout}.log_prob_micro_batch_size_per_gpu": cfg.perpo.micro_batch_size,
        f"{rollout}.agent.default_agent_loop": AGENT_LOOP_NAME,
        f"{rollout}.agent.agent_loop_config_path": paths.agent_loop_config,
        "actor_rollout_ref.model.path": paths.model_dir,
        "actor_rollout_ref.model.external_lib": ACTOR_EXTERNAL_LIB,
        "actor_rollout_ref.model.use_remove_padding": False,  # Chameleon has no varlen patch in verl
    }


def _data_overrides(cfg: Config, paths: VerlPaths) -> dict[str, Any]:
    perpo = cfg.perpo
    return {
        "data.train_files": paths.train_files,
        "data.val_files": paths.val_files,
        "data.train_batch_size": perpo.train_batch_size,
        "data.gen_batch_size": perpo.gen_batch_size,
        "data.max_prompt_length": perpo.verl.max_prompt_length,
        "data.max_response_length": perpo.max_new_tokens,
        "data.seed": cfg.run.seed,
        "data.custom_cls.path": DATASET_MODULE,
        "data.custom_cls.name": DATASET_CLASS,
        "data.filter_overlong_prompts": False,  # an over-long prompt is an error, never dropped quietly
        "data.truncation": "error",
    }


def _algorithm_overrides(cfg: Config) -> dict[str, Any]:
    return {
        "algorithm.adv_estimator": cfg.grpo.adv_estimator,
        "algorithm.norm_adv_by_std_in_grpo": cfg.grpo.norm_adv_by_std,
        "algorithm.use_kl_in_reward": False,  # KL is a loss term (Table 6), not a reward penalty
        "algorithm.filter_groups.enable": True,
        "algorithm.filter_groups.metric": FILTER_METRIC_KEYS[cfg.perpo.filter_metric],
        "algorithm.filter_groups.max_num_gen_batches": cfg.perpo.max_gen_batches,
    }


def _reward_overrides(cfg: Config) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "reward.reward_manager.source": "importlib",
        "reward.reward_manager.module.path": REWARD_MANAGER_MODULE,
        "reward.reward_manager.name": REWARD_MANAGER_CLASS,
        "+omni_r1.max_images_per_answer": cfg.generation.max_images_per_answer,
    }
    for key, value in cfg.reward.model_dump(mode="json").items():
        overrides[f"+omni_r1.reward.{key}"] = value
    return overrides


def _trainer_overrides(cfg: Config, track: str, paths: VerlPaths) -> dict[str, Any]:
    return {
        "trainer.project_name": cfg.tracking.experiment,
        "trainer.experiment_name": f"perpo-{track}",
        "trainer.logger": ["console", "mlflow"],
        "trainer.nnodes": cfg.perpo.verl.nnodes,
        "trainer.n_gpus_per_node": cfg.perpo.verl.n_gpus_per_node,
        "trainer.total_training_steps": cfg.perpo.max_steps,
        "trainer.save_freq": save_frequency(cfg.perpo.save_steps),
        "trainer.default_local_dir": paths.checkpoint_dir,
        "trainer.val_before_train": False,
        "trainer.test_freq": -1,
        "trainer.resume_mode": "auto",
    }


def verl_overrides(cfg: Config, track: str, paths: VerlPaths) -> dict[str, Any]:
    """The verl config of one PeRPO run, as ``{dotted key: value}`` hydra overrides.

    Keys that verl's ``ppo_trainer`` config lacks carry hydra's ``+`` (add) prefix; every
    other key must already exist there (the test composes verl's packaged config).

    Args:
        cfg: validated params (``perpo.engine`` need not be ``verl`` to read the mapping).
        track: training track (names the MLflow experiment run).
        paths: where the job reads and writes, as the cluster sees it.
    """
    return {
        **_data_overrides(cfg, paths),
        **_algorithm_overrides(cfg),
        **_actor_overrides(cfg),
        **_rollout_overrides(cfg, paths),
        **_reward_overrides(cfg),
        **_trainer_overrides(cfg, track, paths),
    }


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra_value(item) for item in value) + "]"
    if isinstance(value, str):
        plain = value and all(char.isalnum() or char in "_-./" for char in value)
        return value if plain else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value) if isinstance(value, float) else str(value)


def hydra_args(overrides: dict[str, Any]) -> list[str]:
    """``{key: value}`` → ``["key=value", ...]`` as hydra's command line reads them."""
    return [f"{key}={_hydra_value(value)}" for key, value in overrides.items()]
