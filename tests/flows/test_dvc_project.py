"""flows.dvc_project: the stage graph as DVC sees it, selection, and override writing."""

from __future__ import annotations

from flows import dvc_project


def test_stages_come_in_dependency_order_with_dvc_names(toy_project_factory):
    project = toy_project_factory("graph")

    stages = dvc_project.load_stages(project)

    names = [stage.name for stage in stages]
    assert names == [
        "prepare",
        "pesft@omni_r1",
        "pesft@omni_r1_zero",
        "evaluate@omni_r1-10",
        "evaluate@omni_r1-20",
        "evaluate@omni_r1_zero-10",
        "evaluate@omni_r1_zero-20",
        "promote",
    ]
    position = {name: index for index, name in enumerate(names)}
    for stage in stages:
        assert all(position[up] < position[stage.name] for up in stage.upstream)
    by_name = {stage.name: stage for stage in stages}
    assert by_name["evaluate@omni_r1_zero-20"].upstream == ("pesft@omni_r1_zero",)
    assert len(by_name["promote"].upstream) == 5  # every evaluate stage and prepare


def test_selection_by_track_and_step(toy_project_factory):
    stages = dvc_project.load_stages(toy_project_factory("select"))

    chosen = dvc_project.select_stages(stages, ["omni_r1_zero"], [20])

    assert [s.name for s in chosen] == ["prepare", "pesft@omni_r1_zero", "evaluate@omni_r1_zero-20", "promote"]
    assert len(dvc_project.select_stages(stages, ["omni_r1", "omni_r1_zero"], None)) == len(stages)


def test_key_tokens_of_foreach_and_matrix_names():
    assert dvc_project.key_tokens("evaluate@omni_r1_zero-30") == ["omni_r1_zero", "30"]
    assert dvc_project.key_tokens("pesft@omni_r1") == ["omni_r1"]
    assert dvc_project.key_tokens("report") == []
    assert dvc_project.is_selected("evaluate@omni_r1-pesft", ["omni_r1"], [10])


def test_manifest_producers_include_upstream(toy_project_factory):
    stages = dvc_project.load_stages(toy_project_factory("producers"))
    assert [s.name for s in dvc_project.producers_of(stages, dvc_project.manifest_pattern("metrics"))] == ["prepare"]
    assert [s.name for s in dvc_project.producers_of(stages, "metrics/omnibench_omni_r1-10.json")] == [
        "prepare",
        "pesft@omni_r1",
        "evaluate@omni_r1-10",
    ]


def test_overrides_keep_comments_and_use_dvc_syntax(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("run:\n  seed: 0  # the seed\n  device: auto\n")

    dvc_project.apply_overrides(params, {"run.seed": 7, "run.device": "cpu"})

    text = params.read_text()
    assert "seed: 7  # the seed" in text
    assert "device: cpu" in text
    assert dvc_project.override_args({"a.b": [1, 2], "c": "x"}) == ["a.b=[1, 2]", 'c="x"']
