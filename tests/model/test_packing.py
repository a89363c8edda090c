"""pack_trajectory / pack_many / collate: masks, image targets, drops, padding."""

from __future__ import annotations

import pytest
import torch

from omni_r1.model.generation import decode_interleaved
from omni_r1.model.packing import (
    IGNORE_INDEX,
    PackingError,
    collate,
    left_pad_prompts,
    pack_many,
    pack_prompt,
    pack_trajectory,
)
from omni_r1.trajectory import Line, Step, Trajectory, Zoom, parse_trajectory, render_trajectory


def make_trajectory(n_inputs: int = 1, answer: str = "red") -> Trajectory:
    return Trajectory(
        question="What colour is the flag?",
        choices=("red", "blue"),
        input_images=tuple(f"input-{i}" for i in range(n_inputs)),
        steps=(
            Step(rationale="The flag is small; look at the top left.", action=Zoom(x=0.1, y=0.05, w=0.3, h=0.3), has_image=True),
            Step(rationale="Compare it with the sky.", action=None, has_image=False),
            Step(rationale="Draw the pole.", action=Line(x1=0.2, y1=0.1, x2=0.2, y2=0.9), has_image=True),
        ),
        final_answer=answer,
    )


def make_codes(layout, count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, layout.num_codes, (layout.tokens_per_image,), generator=generator) for _ in range(count)]


def test_labels_mask_prompt_and_input_images(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = make_trajectory(n_inputs=2)
    codes = make_codes(layout, 4)
    packed = pack_trajectory(traj, layout, tokenizer, codes, max_length=4096)
    prompt = pack_prompt(traj, layout, tokenizer, codes[:2])
    ids, labels = packed.input_ids, packed.labels
    assert ids[0] == layout.bos_id and ids[-1] == layout.eos_id
    assert torch.equal(ids[: len(prompt)], prompt)
    assert (labels[: len(prompt)] == IGNORE_INDEX).all()
    assert torch.equal(labels[len(prompt) :], ids[len(prompt) :])
    assert ids[len(prompt)] == layout.reasoning_open_id
    assert packed.attention_mask.sum() == len(packed)
    # Every image (2 inputs + 2 steps) is BOI + H*W tokens + EOI; the input ones are unlabelled.
    boi = (ids == layout.boi_id).nonzero().flatten().tolist()
    assert len(boi) == 4 and (ids == layout.eoi_id).sum() == 4
    for position, image in zip(boi, codes, strict=True):
        span = ids[position + 1 : position + 1 + layout.tokens_per_image]
        assert torch.equal(span, layout.codes_to_ids(image))
        assert ids[position + 1 + layout.tokens_per_image] == layout.eoi_id
    assert all(position < len(prompt) for position in boi[:2])
    assert all(position > len(prompt) for position in boi[2:])
    markers = [layout.reasoning_open_id, layout.reasoning_close_id, layout.answer_open_id, layout.answer_close_id]
    assistant = ids[len(prompt) :].tolist()
    assert [token for token in assistant if token in markers] == markers


def test_image_spans_hold_exactly_the_step_codes(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = make_trajectory(n_inputs=1)
    codes = make_codes(layout, 3, seed=3)
    packed = pack_trajectory(traj, layout, tokenizer, codes, max_length=4096)
    assert len(packed.image_spans) == 2  # step images only
    for span, expected in zip(packed.image_spans, codes[1:], strict=True):
        window = slice(span.start, span.start + layout.tokens_per_image)
        assert torch.equal(span.codes, expected)
        assert torch.equal(packed.labels[window], layout.codes_to_ids(expected))
        assert packed.input_ids[span.start - 1] == layout.boi_id


def test_decode_interleaved_inverts_the_packer(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = make_trajectory(n_inputs=1)
    codes = make_codes(layout, 3, seed=5)
    packed = pack_trajectory(traj, layout, tokenizer, codes, max_length=4096)
    assistant = packed.input_ids[packed.labels != IGNORE_INDEX]
    text, step_codes = decode_interleaved(tokenizer, layout, assistant)
    assert text == render_trajectory(traj)
    assert torch.equal(step_codes, torch.stack(codes[1:]))
    parsed = parse_trajectory(text)
    assert parsed.ok, parsed.issues
    assert parsed.final_answer == "red" and parsed.image_count == 2
    assert [step.action for step in parsed.steps] == [step.action for step in traj.steps]


def test_text_only_trajectory_packs_and_inverts(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = Trajectory(question="2 + 2?", final_answer="4")
    packed = pack_trajectory(traj, layout, tokenizer, [], max_length=4096)
    assert packed.image_spans == ()
    text, codes = decode_interleaved(tokenizer, layout, packed.input_ids[packed.labels != IGNORE_INDEX])
    assert text == render_trajectory(traj) == "Final Answer: 4"
    assert codes.shape == (0, layout.tokens_per_image)


def test_overlong_sequences_are_dropped_and_counted(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    short = Trajectory(question="2 + 2?", final_answer="4")
    long = make_trajectory(n_inputs=1)
    codes_long = make_codes(layout, 3)
    long_length = len(pack_trajectory(long, layout, tokenizer, codes_long, max_length=10**6))
    assert pack_trajectory(long, layout, tokenizer, codes_long, max_length=long_length) is not None
    assert pack_trajectory(long, layout, tokenizer, codes_long, max_length=long_length - 1) is None
    packed, dropped = pack_many([short, long, short], layout, tokenizer, [[], codes_long, []], long_length - 1)
    assert dropped == 1 and len(packed) == 2
    assert all(len(sequence) < long_length for sequence in packed)


def test_wrong_image_codes_raise(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = make_trajectory(n_inputs=1)
    with pytest.raises(PackingError, match="1 input \\+ 2 step images, got 2"):
        pack_trajectory(traj, layout, tokenizer, make_codes(layout, 2), max_length=4096)
    bad = make_codes(layout, 3)
    bad[2] = bad[2][:-1]
    with pytest.raises(PackingError, match="reasoning image 1: codes shape"):
        pack_trajectory(traj, layout, tokenizer, bad, max_length=4096)
    bad = make_codes(layout, 3)
    bad[0][0] = layout.num_codes
    with pytest.raises(PackingError, match="prompt image 0: codes outside"):
        pack_trajectory(traj, layout, tokenizer, bad, max_length=4096)


def test_collate_right_pads_and_builds_image_targets(tiny_chameleon):
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    first = pack_trajectory(make_trajectory(n_inputs=1), layout, tokenizer, make_codes(layout, 3), 4096)
    second = pack_trajectory(Trajectory(question="2 + 2?", final_answer="4"), layout, tokenizer, [], 4096)
    batch = collate([second, first], pad_id=layout.pad_id)
    width = max(len(first), len(second))
    assert batch["input_ids"].shape == (2, width)
    n = len(second)
    assert torch.equal(batch["input_ids"][0, :n], second.input_ids)
    assert (batch["input_ids"][0, n:] == layout.pad_id).all()
    assert (batch["attention_mask"][0, n:] == 0).all() and (batch["attention_mask"][0, :n] == 1).all()
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert not batch["image_label_mask"][0].any()
    mask, targets = batch["image_label_mask"][1], batch["image_target_codes"][1]
    assert mask.sum() == 2 * layout.tokens_per_image
    assert torch.equal(layout.codes_to_ids(targets[mask]), batch["labels"][1][mask])
    assert (targets[~mask] == -1).all()
    # Only labelled step-image tokens are marked, never prompt images.
    image_labels = layout.is_image_token(batch["labels"][1]) & (batch["labels"][1] != IGNORE_INDEX)
    assert torch.equal(mask, image_labels)


def test_left_pad_prompts(tiny_chameleon):
    layout = tiny_chameleon.layout
    prompts = [torch.tensor([0, 80, 81]), torch.tensor([0, 90])]
    input_ids, attention_mask = left_pad_prompts(prompts, layout.pad_id)
    assert input_ids.tolist() == [[0, 80, 81], [layout.pad_id, 0, 90]]
    assert attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_official_prompt_is_the_released_wrapper(tiny_chameleon) -> None:
    from omni_r1.model.packing import (
        OFFICIAL_PREFIX,
        OFFICIAL_SUFFIX,
        official_prompt_text,
        pack_official_prompt,
    )

    # the wrapper of the released vllm_eval.py (REFERENCE §8), written out in full
    assert OFFICIAL_PREFIX + "Q?" + OFFICIAL_SUFFIX == (
        "You are a helpful assistant.\nUser: Q? Think with images first. The image reasoning process and the "
        "final answer are enclosed within <reserved12856> <reserved12857> and <reserved12866> <reserved12867> "
        "XML tags, respectively.\nAssistant:"
    )
    # placeholder alignment: one put first, missing ones appended, extra ones dropped
    assert official_prompt_text("Q?", 1) == OFFICIAL_PREFIX + "<image>Q?" + OFFICIAL_SUFFIX
    assert official_prompt_text("<image> a <image> b", 3) == OFFICIAL_PREFIX + "<image> a <image> b <image>" + OFFICIAL_SUFFIX
    assert official_prompt_text("<image> a <image> b", 1) == OFFICIAL_PREFIX + "<image> a  b" + OFFICIAL_SUFFIX
    assert official_prompt_text("<image> a", 0) == OFFICIAL_PREFIX + " a" + OFFICIAL_SUFFIX
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    codes = torch.arange(layout.tokens_per_image)  # [H*W]
    ids = pack_official_prompt("What is shown?", layout, tokenizer, [codes])  # [P]
    assert int(ids[0]) == layout.bos_id
    boi = int((ids == layout.boi_id).nonzero()[0])
    assert torch.equal(ids[boi + 1 : boi + 1 + layout.tokens_per_image], layout.codes_to_ids(codes))
    assert int(ids[boi + 1 + layout.tokens_per_image]) == layout.eoi_id
    assert tokenizer.decode(ids[1:boi].tolist()) == OFFICIAL_PREFIX
    tail = tokenizer.decode(ids[boi + 2 + layout.tokens_per_image :].tolist())
    assert tail == "What is shown?" + OFFICIAL_SUFFIX
