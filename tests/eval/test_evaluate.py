"""Omni-Bench evaluation on a tiny random model and a small synthetic bench."""

from __future__ import annotations

import math

import pytest
import torch

from omni_r1.data.codes import CODES_FILE
from omni_r1.eval.evaluate import (
    AVERAGE_KEY,
    BenchError,
    Generation,
    evaluate_items,
    generate_responses,
    image_embedding,
    load_bench,
    perception_scores,
    read_predictions,
    response_mask,
    slice_accuracy,
    write_predictions,
)
from omni_r1.eval.judges import build_judge
from omni_r1.model.packing import pack_prompt
from omni_r1.rewards.perception import perception_score
from omni_r1.rewards.registry import accuracy_grader

PER_SLICE = 2


def test_average_weights_slices_by_sample_count() -> None:
    slices = ["natural", "natural", "structured", "structured", "structured", "diagrammatic"]
    correct = [True, False, True, True, False, False]
    metrics = slice_accuracy(slices, correct)
    # natural 1/2, structured 2/3, diagrammatic 0/1; average = 3 correct / 6 samples
    assert metrics == pytest.approx({"natural": 0.5, "structured": 2 / 3, "diagrammatic": 0.0, "average": 0.5})
    assert list(metrics) == ["natural", "structured", "diagrammatic", "average"]
    mean_of_slices = (0.5 + 2 / 3 + 0.0) / 3
    assert metrics[AVERAGE_KEY] != pytest.approx(mean_of_slices)


def test_paper_table2_average_is_the_weighted_one() -> None:
    # Omni-R1-M (REFERENCE §8): 0.440/0.135/0.115/0.093 on 100/200/200/300 samples -> 0.152
    counts = {"natural": 100, "structured": 200, "diagrammatic": 200, "vision_operational": 300}
    accuracy = {"natural": 0.44, "structured": 0.135, "diagrammatic": 0.115, "vision_operational": 0.0933}
    slices, correct = [], []
    for name, n in counts.items():
        hits = round(accuracy[name] * n)
        slices += [name] * n
        correct += [True] * hits + [False] * (n - hits)
    assert slice_accuracy(slices, correct)[AVERAGE_KEY] == pytest.approx(0.152, abs=1e-3)  # 122 / 800


def test_load_bench_pairs_records_with_cached_input_codes(bench_dirs, tiny_omni) -> None:
    dataset, encoded = bench_dirs
    items = load_bench(dataset, encoded, max_per_slice=0)
    assert len(items) == 4 * PER_SLICE
    assert {item.slice_name for item in items} == {"natural", "structured", "diagrammatic", "vision_operational"}
    for item in items:
        assert len(item.input_codes) == len(item.record.input_images) >= 1
        assert item.input_codes[0].shape == (tiny_omni.layout.tokens_per_image,)
    assert len(load_bench(dataset, encoded, max_per_slice=1)) == 4


def test_missing_codes_name_the_record(bench_dirs, tmp_path) -> None:
    import pyarrow.parquet as pq

    dataset, encoded = bench_dirs
    table = pq.read_table(encoded / CODES_FILE)
    first = table.column("record_id")[0].as_py()
    (tmp_path / "enc").mkdir()
    pq.write_table(table.slice(1), tmp_path / "enc" / CODES_FILE)
    with pytest.raises(BenchError, match=f"{first}.*input_images\\[0\\]"):
        load_bench(dataset, tmp_path / "enc", max_per_slice=0)


def test_evaluate_items_judges_with_the_reward_grader_and_writes_predictions(
    bench_dirs, tiny_omni, eval_cfg, tmp_path
) -> None:
    cfg = eval_cfg()
    items = load_bench(*bench_dirs, max_per_slice=0)
    result = evaluate_items(tiny_omni, items, cfg, build_judge(cfg.judge, cfg.reward))
    assert len(result.rows) == len(items)
    grade = accuracy_grader(cfg.reward)
    for item, row, generation in zip(items, result.rows, result.generations, strict=True):
        assert row["gold"] == item.record.final_answer and row["question"] == item.record.question
        assert row["response"] == generation.text
        assert row["verdict"] == (grade(generation.text, item.record.final_answer).score >= 1.0)
        assert row["images"] == len(row["image_codes"]) == generation.codes.shape[0]
        assert math.isnan(row["perception"]) == (row["images"] == 0)
    expected = slice_accuracy([i.slice_name for i in items], [r["verdict"] for r in result.rows])
    assert result.metrics == expected
    path = write_predictions(result.rows, tmp_path / "p" / "x.parquet")
    back = read_predictions(path)
    assert [r["record_id"] for r in back] == [r["record_id"] for r in result.rows]
    assert [r["verdict"] for r in back] == [r["verdict"] for r in result.rows]


def test_generation_is_batch_invariant_and_images_carry_perception(bench_dirs, tiny_omni, cfg) -> None:
    items = load_bench(*bench_dirs, max_per_slice=1)
    layout = tiny_omni.layout
    prompts = [pack_prompt(i.prompt_trajectory(), layout, tiny_omni.tokenizer, i.input_codes) for i in items]
    kwargs = {"max_new_tokens": 40, "do_sample": False, "sequence_bias": {(layout.boi_id,): 30.0}}
    batched = generate_responses(tiny_omni, prompts, kwargs, max_images=1, batch_size=4, decoding="interleaved")
    single = generate_responses(tiny_omni, prompts[:2], kwargs, max_images=1, batch_size=1, decoding="interleaved")
    assert [g.text for g in single] == [g.text for g in batched[:2]]
    assert all(g.codes.shape == (1, layout.tokens_per_image) for g in batched)  # BOI favoured, cap 1
    codebook = tiny_omni.model.model.vqmodel.quantize.embedding.weight
    scores = perception_scores(batched, codebook, layout, cfg)
    for generation, score in zip(batched, scores, strict=True):
        ids = generation.response_ids.unsqueeze(0)  # [1, N]
        alone = perception_score(
            ids, response_mask(ids, layout.eos_id), codebook.detach(), layout,
            tau=cfg.reward.tau, score_map=cfg.reward.perception_map, aggregation=cfg.reward.aggregation,
        ).score[0]  # fmt: skip
        assert 0.0 < score <= 1.0 and score == pytest.approx(float(alone))


def test_response_mask_stops_after_the_first_eos() -> None:
    ids = torch.tensor([[5, 6, 2, 1, 1], [5, 2, 7, 2, 1], [5, 6, 7, 8, 9]])
    assert response_mask(ids, eos_id=2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_image_embedding_is_the_mean_codebook_vector() -> None:
    codebook = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    codes = torch.tensor([[0, 1], [2, 2]])  # two images of two positions
    # mean of (0,0), (2,0), (0,4), (0,4) = (0.5, 2.0)
    assert image_embedding(codes, codebook) == pytest.approx([0.5, 2.0])
    assert image_embedding(torch.empty(0, 2, dtype=torch.long), codebook) == []
    generation = Generation(torch.tensor([5, 2]), "Final Answer: x", torch.empty(0, 4, dtype=torch.long))
    assert generation.codes.numel() == 0


def test_static_cache_and_batching_leave_greedy_answers_unchanged(bench_dirs, tiny_omni) -> None:
    from omni_r1.model.generation import cache_kwargs

    items = load_bench(*bench_dirs, max_per_slice=0)
    layout = tiny_omni.layout
    prompts = [pack_prompt(i.prompt_trajectory(), layout, tiny_omni.tokenizer, i.input_codes) for i in items]
    greedy = {"max_new_tokens": 48, "do_sample": False, "sequence_bias": {(layout.boi_id,): 5.0}}
    one_by_one = generate_responses(tiny_omni, prompts, {**greedy, **cache_kwargs("dynamic")}, max_images=2, batch_size=1, decoding="interleaved")
    batched = generate_responses(tiny_omni, prompts, {**greedy, **cache_kwargs("static")}, max_images=2, batch_size=len(prompts), decoding="interleaved")
    assert len(prompts) == 8 and len({p.shape[0] for p in prompts}) > 1  # left padding is exercised
    for alone, together in zip(one_by_one, batched, strict=True):
        assert torch.equal(alone.response_ids[: together.response_ids.shape[0]], together.response_ids[: alone.response_ids.shape[0]])
        assert (alone.text, alone.codes.tolist()) == (together.text, together.codes.tolist())
    assert sum(g.codes.shape[0] for g in batched) > 0  # images were generated and compared too
    with pytest.raises(ValueError, match="unknown kv_cache"):
        cache_kwargs("paged")
