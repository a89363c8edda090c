"""params.yaml → verl overrides, composed into verl's own ppo_trainer config, key by key."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from omni_r1.config import ConfigError, load_config
from omni_r1.verl.settings import VerlPaths, hydra_args, save_frequency, verl_overrides

PATHS = VerlPaths(
    model_dir="/ckpt/pesft",
    train_files="/data/train.parquet",
    val_files="/data/val.parquet",
    checkpoint_dir="/ckpt/verl",
    agent_loop_config="verl/omni_r1/agent_loops.yaml",
)

# Paper Table 6 (REFERENCE.md §6), written out by hand: verl key → value.
TABLE_6 = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.metric": "acc",
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_coef": 0.003,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.28,
    "actor_rollout_ref.actor.entropy_coeff": 0.001,
    "actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean",
    "data.train_batch_size": 64,
    "data.gen_batch_size": 192,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 16,
    "actor_rollout_ref.rollout.n": 16,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 0.95,
    "actor_rollout_ref.actor.optim.lr_warmup_steps": 5,
    "actor_rollout_ref.actor.optim.weight_decay": 0.1,
    "actor_rollout_ref.actor.optim.clip_grad": 1.0,
}


def _composed(compose_verl, cfg):
    overrides = verl_overrides(cfg, "omni_r1", PATHS)
    return overrides, compose_verl(hydra_args(overrides))


def _assert_every_key_resolves(composed, overrides):
    for key, intended in overrides.items():
        key = key.removeprefix("+")
        value = OmegaConf.select(composed, key, throw_on_missing=True)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert value == intended, f"{key}: composed {value!r}, intended {intended!r}"


def test_default_params_compose_into_verls_config(compose_verl, cfg):
    overrides, composed = _composed(compose_verl, cfg)
    _assert_every_key_resolves(composed, overrides)
    # the keys are verl's own: only the omni_r1 namespace is added to its config
    assert {key for key in overrides if key.startswith("+")} == {
        key for key in overrides if key.startswith("+omni_r1.")
    }
    assert composed.data.train_batch_size == cfg.perpo.train_batch_size
    assert composed.algorithm.filter_groups.max_num_gen_batches == cfg.perpo.max_gen_batches
    assert composed.omni_r1.reward.tau == cfg.reward.tau
    assert composed.trainer.logger == ["console", "mlflow"]
    # interpolations that read the mapped keys still resolve to them
    rollout = OmegaConf.to_container(composed.actor_rollout_ref.rollout, resolve=True)
    assert rollout["response_length"] == cfg.perpo.max_new_tokens
    assert rollout["prompt_length"] == cfg.perpo.verl.max_prompt_length


def test_paper_overlay_is_table_6_key_by_key(compose_verl, repo_root):
    paper = load_config(repo_root / "params.yaml", (repo_root / "params/paper.yaml",))
    overrides, composed = _composed(compose_verl, paper)
    _assert_every_key_resolves(composed, overrides)
    for key, value in TABLE_6.items():
        assert OmegaConf.select(composed, key) == value, key
    assert composed.omni_r1.reward.perception_map == "exp"  # paper §4.2


def test_an_unknown_verl_key_would_not_compose(compose_verl):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_verl(["algorithm.filter_groups.metrc=acc"])


def test_save_frequency_hits_every_save_step():
    assert save_frequency([10, 20, 30, 60]) == 10
    assert save_frequency([4, 6]) == 2


def _with(repo_root, tmp_path, **perpo):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["perpo"].update(perpo)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_budget_shorter_than_one_image_fails_at_load_for_either_engine(repo_root, tmp_path):
    for engine in ("verl", "local"):
        path = _with(repo_root, tmp_path, engine=engine, max_new_tokens=40)
        with pytest.raises(ConfigError, match=r"perpo\.max_new_tokens=40 < one image = 8x8 codes"):
            load_config(path)


def test_verl_without_dual_clip_fails_at_load(repo_root, tmp_path):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["perpo"]["engine"] = "verl"
    data["grpo"]["clip_ratio_c"] = None
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"grpo\.clip_ratio_c"):
        load_config(path)


def test_unknown_engine_is_named(repo_root, tmp_path):
    with pytest.raises(ConfigError, match=r"perpo\.engine"):
        load_config(_with(repo_root, tmp_path, engine="slurm"))
