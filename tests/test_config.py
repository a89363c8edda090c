from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from codebase import module_files, restated_defaults, unread_leaves

from omni_r1.config import (
    TRACKS,
    Config,
    ConfigError,
    Section,
    deep_merge,
    dvc_set_params,
    flatten,
    load_config,
)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _defaults(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_params_yaml_validates(cfg: Config) -> None:
    assert cfg.executor.resolution > 0
    assert cfg.tracking.tracking_uri


def test_unknown_key_is_named(repo_root: Path, tmp_path: Path) -> None:
    data = _defaults(repo_root)
    data["executor"]["line_widht"] = 3
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path / "p.yaml", data))
    assert "executor.line_widht: unknown key" in str(err.value)
    assert "p.yaml" in str(err.value)


def test_unknown_section_is_named(repo_root: Path, tmp_path: Path) -> None:
    data = _defaults(repo_root) | {"trainer": {"lr": 1}}
    with pytest.raises(ConfigError, match=r"trainer: unknown key"):
        load_config(_write(tmp_path / "p.yaml", data))


def test_mistyped_value_is_named(repo_root: Path, tmp_path: Path) -> None:
    data = _defaults(repo_root)
    data["executor"]["resolution"] = "big"
    with pytest.raises(ConfigError, match=r"executor.resolution"):
        load_config(_write(tmp_path / "p.yaml", data))


def test_missing_key_is_named(repo_root: Path, tmp_path: Path) -> None:
    data = _defaults(repo_root)
    del data["run"]["seed"]
    with pytest.raises(ConfigError, match=r"run.seed: missing key"):
        load_config(_write(tmp_path / "p.yaml", data))


def test_overlay_overrides_only_its_keys(repo_root: Path, tmp_path: Path) -> None:
    overlay = _write(tmp_path / "o.yaml", {"executor": {"resolution": 512}})
    cfg = load_config(repo_root / "params.yaml", (overlay,))
    base = load_config(repo_root / "params.yaml")
    assert cfg.executor.resolution == 512
    assert cfg.executor.line_width == base.executor.line_width


def test_overlay_with_unknown_key_fails(repo_root: Path, tmp_path: Path) -> None:
    overlay = _write(tmp_path / "o.yaml", {"executor": {"zoom": 2}})
    with pytest.raises(ConfigError, match=r"executor.zoom: unknown key"):
        load_config(repo_root / "params.yaml", (overlay,))


def test_paper_overlay_validates(repo_root: Path) -> None:
    paper = repo_root / "params" / "paper.yaml"
    cfg = load_config(repo_root / "params.yaml", (paper,))
    assert cfg.executor.resolution == 512  # Anole's 512x512 images


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_deep_merge_recurses() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"c": 5}})
    assert merged == {"a": {"b": 1, "c": 5}, "d": 3}


def test_dvc_set_params_flattens(tmp_path: Path) -> None:
    overlay = _write(tmp_path / "o.yaml", {"a": {"b": 1, "c": [1, 2]}, "d": "x"})
    args = dvc_set_params(overlay)
    assert args == ["-S", "a.b=1", "-S", f"a.c={json.dumps([1, 2])}", "-S", 'd="x"']


def _readers() -> list[Path]:
    """Every module that may read the configuration: the library (but config.py) and the flows."""
    files = {**module_files("omni_r1"), **module_files("flows")}
    return [path for module, path in files.items() if module != "omni_r1.config"]


def test_every_params_leaf_is_read_somewhere() -> None:
    assert unread_leaves(Config, _readers()) == []


def test_a_dead_key_is_reported(tmp_path: Path) -> None:
    class Perpo(Section):
        learning_rate: float
        never_read_anywhere: int

    class Extended(Section):
        perpo: Perpo

    assert unread_leaves(Extended, _readers()) == ["perpo.never_read_anywhere"]
    reader = tmp_path / "reader.py"
    reader.write_text("def f(cfg):\n    return cfg.perpo.never_read_anywhere\n")
    assert unread_leaves(Extended, [*_readers(), reader]) == []


def test_no_library_default_restates_a_params_value(repo_root: Path) -> None:
    params = dict(flatten(_defaults(repo_root)))
    assert restated_defaults(_readers(), params) == []


def test_a_restated_default_is_reported(repo_root: Path, tmp_path: Path) -> None:
    params = dict(flatten(_defaults(repo_root)))
    source = tmp_path / "writer.py"
    shard_size, on_bad_record = params["data.shard_size"], params["data.on_bad_record"]
    source.write_text(
        f"def write(records, shard_size={shard_size!r}, *, on_bad_record={on_bad_record!r}, window=3):\n"
        "    pass\n"
    )
    found = restated_defaults([source], params)
    assert [item.split(" ", 1)[1] for item in found] == [
        f"write(shard_size={params['data.shard_size']!r})",
        f"write(on_bad_record={params['data.on_bad_record']!r})",
    ]


SYNONYMS = (("learning_rate", "lr"), ("max_grad_norm", "grad_clip", "clip_grad"), ("max_steps", "steps"))


def test_one_spelling_per_idea_across_sections(repo_root: Path) -> None:
    names = {dotted.rsplit(".", 1)[-1] for dotted, _ in flatten(_defaults(repo_root))}
    for spellings in SYNONYMS:
        assert len(names & set(spellings)) <= 1, spellings


def test_dvc_yaml_loops_over_the_config_tracks(repo_root: Path) -> None:
    params = _defaults(repo_root)
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]

    def resolved(value):  # "${pesft.datasets}" -> that params.yaml value
        if not (isinstance(value, str) and value.startswith("${")):
            return value
        node = params
        for key in value.strip("${}").split("."):
            node = node[key]
        return node

    loops = [resolved(stage["foreach"]) for stage in stages.values() if "foreach" in stage]
    loops += [resolved(stage["matrix"]["track"]) for stage in stages.values() if "track" in stage.get("matrix", {})]
    assert len(loops) >= 4  # pesft, perpo, evaluate_pesft, evaluate
    assert all(tuple(loop) == TRACKS for loop in loops)  # a dict loops over its keys


def test_paper_overlay_budgets_hold_an_anole_image(repo_root: Path) -> None:
    from omni_r1.config import image_grid

    cfg = load_config(repo_root / "params.yaml", (repo_root / "params" / "paper.yaml",))
    image = image_grid(cfg.model) ** 2 + 2
    assert image == 32 * 32 + 2  # 512 px, four halvings
    assert cfg.generation.max_new_tokens >= image and cfg.perpo.max_new_tokens >= image
    assert cfg.packing.max_length >= (1 + cfg.generation.max_images_per_answer) * image
    assert cfg.model.vq_decoder_path == "hf://GAIR/Anole-7b-v0.1/tokenizer/vqgan.ckpt"
    assert cfg.judge.name == "llm"


@pytest.mark.parametrize(
    ("overlay", "keys"),
    [
        ({"generation": {"max_new_tokens": 512}}, ["generation.max_new_tokens=512 < one image = 32x32"]),
        ({"perpo": {"max_new_tokens": 1025}}, ["perpo.max_new_tokens=1025"]),
        ({"eval": {"decoding": "interleaved"}}, ["eval.max_new_tokens=1024", "eval.decoding=interleaved"]),
        ({"packing": {"max_length": 4103}}, ["packing.max_length=4103 < 4104", "generation.max_images_per_answer=3"]),
    ],
)
def test_inconsistent_budgets_are_named(repo_root: Path, tmp_path: Path, overlay: dict, keys: list[str]) -> None:
    extra = _write(tmp_path / "o.yaml", overlay)
    with pytest.raises(ConfigError, match="inconsistent budget") as err:
        load_config(repo_root / "params.yaml", (repo_root / "params" / "paper.yaml", extra))
    for key in keys:
        assert key in str(err.value)


def test_text_only_evaluation_may_keep_the_official_budget(repo_root: Path) -> None:
    cfg = load_config(repo_root / "params.yaml", (repo_root / "params" / "paper.yaml",))
    assert (cfg.eval.decoding, cfg.eval.max_new_tokens) == ("text_only", 1024)  # < 1026, no image needed


def test_tiny_budget_uses_the_tiny_grid(repo_root: Path, tmp_path: Path) -> None:
    # tiny default: 64 px, 3 halvings -> 8x8 = 64 codes, 66 tokens with BOI/EOI
    extra = _write(tmp_path / "o.yaml", {"perpo": {"max_new_tokens": 65}})
    with pytest.raises(ConfigError, match=r"perpo.max_new_tokens=65 < one image = 8x8 codes \+ BOI \+ EOI = 66"):
        load_config(repo_root / "params.yaml", (extra,))
    ok = _write(tmp_path / "ok.yaml", {"perpo": {"max_new_tokens": 66}})
    assert load_config(repo_root / "params.yaml", (ok,)).perpo.max_new_tokens == 66


@pytest.mark.parametrize(
    "overlays",
    [("paper.yaml",), ("paper.yaml", "smoke-paper.yaml"), ("paper.yaml", "paper-interleaved.yaml")],
    ids=["paper", "paper+smoke", "paper+interleaved"],
)
def test_every_documented_overlay_stack_validates(repo_root: Path, overlays: tuple[str, ...]) -> None:
    # the stacks the Makefile and README use; a renamed key or a new check must not break them silently
    paths = tuple(repo_root / "params" / name for name in overlays)
    cfg = load_config(repo_root / "params.yaml", paths)
    expected: dict[str, object] = {}
    for path in paths:  # a later overlay wins
        expected.update(flatten(yaml.safe_load(path.read_text(encoding="utf-8"))))
    loaded = dict(flatten(cfg.model_dump(mode="json")))
    wrong = {key: (value, loaded.get(key)) for key, value in expected.items() if loaded.get(key) != value}
    assert not wrong, wrong


def test_an_ablation_step_without_a_checkpoint_is_named(repo_root: Path, tmp_path: Path) -> None:
    overlay = _write(tmp_path / "o.yaml", {"eval": {"ablation_steps": [15, 60]}})
    with pytest.raises(ConfigError, match=r"eval.ablation_steps \[15\]: no such PeRPO checkpoint.*perpo.save_steps"):
        load_config(repo_root / "params.yaml", (overlay,))
