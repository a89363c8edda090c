"""Fixtures of the cluster-engine tests: verl's own packaged config, composed with hydra."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def compose_verl():
    """``compose(overrides) -> DictConfig``: verl's ``ppo_trainer`` config with hydra overrides."""
    pytest.importorskip("verl", reason="verl is not installed (pip install -e '.[verl]')")
    from hydra import compose, initialize_config_module

    def build(overrides: list[str]):
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            return compose(config_name="ppo_trainer", overrides=overrides)

    return build


@pytest.fixture
def tiny_checkpoint(tiny_builder, tmp_path):
    """A tiny random Chameleon saved in HF layout: ``(folder, TinyChameleon)``."""
    tiny = tiny_builder(seed=3)
    folder = tmp_path / "pesft"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder, tiny


@pytest.fixture(scope="module")
def shared_tiny_chameleon(tiny_builder):
    """One tiny random Chameleon per module, for tests that only read it."""
    return tiny_builder(seed=1)
