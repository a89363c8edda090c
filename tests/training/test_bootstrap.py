"""Omni-R1-Zero bootstrap: exactly one generated image per text step, decodable, written whole."""

from __future__ import annotations

import io

import torch
from PIL import Image

from omni_r1.data.records import Record, to_png
from omni_r1.data.storage import read_manifest, read_records, write_records
from omni_r1.model.images import decode_codes
from omni_r1.model.packing import pack_trajectory
from omni_r1.model.vq import build_decoder
from omni_r1.training.bootstrap import Draft, bootstrap_records, decoded_images, step_prefix


def text_cot_records(count: int) -> list[Record]:
    image = to_png(Image.new("RGB", (32, 32), (200, 30, 30)))
    return [
        Record(
            id=f"text_cot/{index:03d}", source="synthetic", uni_task="natural", skills=["grounding"],
            question=f"What colour is shape {index}?", choices=[], input_images=[image], steps=[],
            final_answer="red", answer_type="text",
            text_cot=[f"Shape {index} is on the left.", "It is red.", "So red."][: 1 + index % 3],
        )  # fmt: skip
        for index in range(count)
    ]


def run_bootstrap(tiny, records, **overrides):
    torch.manual_seed(0)
    decoder = build_decoder(tiny.model.config.vq_config)
    codes = [[torch.randint(0, tiny.layout.num_codes, (tiny.layout.tokens_per_image,))] for _ in records]
    settings = {"max_length": 4096, "batch_size": 2, "sampling": {"do_sample": True, "top_p": 0.95}, **overrides}
    return bootstrap_records(
        records, codes, tiny.model.eval(), tiny.layout, tiny.tokenizer,
        lambda c: decode_codes(decoder, tiny.model.model.vqmodel, c), source_name="text_cot", **settings,
    )  # fmt: skip


def test_one_image_per_step_decodes_and_manifest_counts_match(tiny_builder, tmp_path) -> None:
    tiny = tiny_builder(seed=0)
    records = text_cot_records(5) + [text_cot_records(1)[0].model_copy(update={"id": "empty", "text_cot": []})]
    result = run_bootstrap(tiny, records)

    assert result.skipped == {"no_text_cot": 1}
    assert [r.id for r in result.records] == [r.id for r in records[:5]]
    for source, record in zip(records, result.records, strict=False):
        assert [step.rationale for step in record.steps] == source.text_cot
        assert all(step.image is not None and step.action is None for step in record.steps)
        images = decoded_images(record)
        assert len(images) == len(source.text_cot)
        assert all(im.size == (32, 32) for im in images)
        for index in range(len(record.steps)):
            codes = result.codes[(record.id, f"step_{index}")]
            assert codes.shape == (tiny.layout.tokens_per_image,)
            assert 0 <= int(codes.min()) and int(codes.max()) < tiny.layout.num_codes

    manifest = write_records(result.records, tmp_path / "zero", shard_size=16, skipped=result.skipped)
    assert manifest["total"] == 5 and manifest["skipped_total"] == 1
    assert read_manifest(tmp_path / "zero")["total"] == 5
    back = list(read_records(tmp_path / "zero"))
    assert sum(len(r.steps) for r in back) == sum(len(r.text_cot) for r in records[:5])
    assert all(Image.open(io.BytesIO(step.image)).size == (32, 32) for r in back for step in r.steps)


def test_each_image_is_conditioned_on_the_packed_prefix(tiny_builder) -> None:
    """The prefix of step t is the PeSFT packing of the trace up to t's BOI, token for token."""
    tiny = tiny_builder(seed=0)
    records = text_cot_records(3)
    result = run_bootstrap(tiny, records, sampling={"do_sample": False})
    record = result.records[2]  # three steps
    codes = [result.codes[(record.id, "input_0")]] + [result.codes[(record.id, f"step_{t}")] for t in range(3)]
    draft = Draft(record=records[2], steps=list(records[2].text_cot), input_codes=codes[:1])
    full = pack_trajectory(draft.trajectory(2), tiny.layout, tiny.tokenizer, codes, 4096)
    for step in range(3):
        prefix = step_prefix(draft, tiny.layout, tiny.tokenizer, 4096)
        start = full.image_spans[step].start
        assert prefix[-1] == tiny.layout.boi_id
        assert torch.equal(prefix, full.input_ids[:start])
        draft.step_codes.append(codes[1 + step])

    again = run_bootstrap(tiny, records, sampling={"do_sample": False})  # greedy: reproducible
    assert all(torch.equal(again.codes[key], value) for key, value in result.codes.items())


def test_traces_longer_than_the_packing_limit_are_skipped(tiny_builder) -> None:
    tiny = tiny_builder(seed=0)
    records = text_cot_records(3)
    short = run_bootstrap(tiny, records[:1])
    limit = len(pack_trajectory(
        Draft(records[0], list(records[0].text_cot), [short.codes[(records[0].id, "input_0")]]).trajectory(0),
        tiny.layout, tiny.tokenizer, [short.codes[(records[0].id, k)] for k in ("input_0", "step_0")], 4096,
    ))  # fmt: skip
    result = run_bootstrap(tiny, records, max_length=limit + 5)
    assert [r.id for r in result.records] == [records[0].id]
    assert result.skipped == {"too_long": 2}
