"""InterleavedLogitsProcessor with HF generate, and decoding generated ids back to text."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList

from omni_r1.model.generation import (
    IMAGE_PLACEHOLDER_ID,
    DecodeStepCounter,
    InterleavedLogitsProcessor,
    advance_state,
    cache_kwargs,
    decode_interleaved,
    generate_interleaved,
    generation_kwargs,
    interleave_state,
    scan_segments,
    split_segments,
    with_cache,
)
from omni_r1.model.logits import with_image_logits
from omni_r1.model.packing import IGNORE_INDEX, left_pad_prompts, pack_prompt, pack_trajectory
from omni_r1.trajectory import IMAGE_SLOT, Step, Trajectory, Zoom, parse_trajectory


def check_grammar(tokens: list[int], layout, max_images: int | None = None) -> tuple[int, bool]:
    """Independent reference of the grammar, token by token.

    Returns:
        (images opened, whether the sequence ends inside an open image).
    """
    if layout.eos_id in tokens:
        end = tokens.index(layout.eos_id)
        assert all(token == layout.pad_id for token in tokens[end + 1 :]), "tokens after EOS"
        tokens, finished = tokens[:end], True
    else:
        finished = False
    in_image, position, images = False, 0, 0
    for token in tokens:
        is_image = layout.image_token_start <= token < layout.image_token_end
        if not in_image:
            assert not is_image, f"image token {token} in text mode"
            assert token not in (layout.eoi_id, layout.bos_id, layout.pad_id), f"{token} in text mode"
            if token == layout.boi_id:
                in_image, position, images = True, 0, images + 1
        elif position < layout.tokens_per_image:
            assert is_image, f"non-image token {token} inside an image at {position}"
            position += 1
        else:
            assert token == layout.eoi_id, f"{token} instead of EOI"
            in_image = False
    assert not (finished and in_image), "EOS inside an image"
    if max_images is not None:
        assert images <= max_images
    return images, in_image


def _prompts(layout, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 8, (batch,), generator=generator).tolist()
    prompts = [
        torch.cat([torch.tensor([layout.bos_id]), torch.randint(layout.answer_close_id + 1, layout.vocab_size, (n,), generator=generator)])
        for n in lengths
    ]
    return left_pad_prompts(prompts, layout.pad_id)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 4),
    temperature=st.floats(0.3, 2.0),
    top_p=st.sampled_from([1.0, 0.95, 0.8]),
    max_images=st.one_of(st.none(), st.integers(0, 3)),
    boi_bias=st.floats(0.0, 5.0),
    max_new_tokens=st.integers(1, 80),
    use_cache=st.booleans(),
)
def test_sampled_sequences_hold_only_complete_images_and_parse(
    shared_tiny_chameleon, seed, batch, temperature, top_p, max_images, boi_bias, max_new_tokens, use_cache
):
    """Any seed, temperature, top-p, budget: grammar holds, images complete, text parses."""
    model, layout, tokenizer = shared_tiny_chameleon.model, shared_tiny_chameleon.layout, shared_tiny_chameleon.tokenizer
    input_ids, attention_mask = _prompts(layout, batch=batch, seed=seed)
    torch.manual_seed(seed)
    sequences = generate_interleaved(
        model, layout, input_ids, attention_mask, max_images=max_images,
        max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p,
        use_cache=use_cache, sequence_bias={(layout.boi_id,): boi_bias, (layout.eos_id,): 1.0},
    )  # fmt: skip
    assert sequences.shape[1] <= input_ids.shape[1] + max_new_tokens
    for row in sequences[:, input_ids.shape[1] :]:
        images, unfinished = check_grammar(row.tolist(), layout, max_images)
        assert not unfinished  # the budget guard never opens an image it cannot finish
        text, codes = decode_interleaved(tokenizer, layout, row)
        assert codes.shape == (images, layout.tokens_per_image)
        assert ((codes >= 0) & (codes < layout.num_codes)).all()
        assert text.count(IMAGE_SLOT) == images
        parse_trajectory(text)  # never raises on model output


def test_image_mode_is_exercised(tiny_chameleon):
    """A fixed setting where images must appear, so the property above is not vacuous."""
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=4, seed=0)
    torch.manual_seed(0)
    sequences = generate_interleaved(
        model, layout, input_ids, attention_mask, max_new_tokens=64, do_sample=True,
        temperature=1.0, top_p=0.95, sequence_bias={(layout.boi_id,): 4.0},
    )  # fmt: skip
    counts = [check_grammar(row.tolist(), layout)[0] for row in sequences[:, input_ids.shape[1] :]]
    assert sum(counts) > 0


def test_unfinished_image_only_when_budget_runs_out(tiny_chameleon):
    """Without the budget guard an image can be cut by max_new_tokens; decoding drops it."""
    model, layout = with_image_logits(tiny_chameleon.model), tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=2, seed=7)
    force_boi = {(layout.boi_id,): 50.0}
    budget = layout.tokens_per_image  # too short for BOI + H*W + EOI
    processor = InterleavedLogitsProcessor(layout, batch_size=2)  # no max_new_tokens: no guard
    sequences = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=budget, do_sample=False,
        sequence_bias=force_boi, logits_processor=LogitsProcessorList([processor]),
        pad_token_id=layout.pad_id, eos_token_id=layout.eos_id,
    )
    for row in sequences[:, input_ids.shape[1] :]:
        assert row.shape[0] == budget  # generation hit max_new_tokens
        images, unfinished = check_grammar(row.tolist(), layout)
        assert images == 1 and unfinished
        segments = scan_segments(row, layout)
        assert segments.codes == [] and segments.malformed_images == 1
    guarded = generate_interleaved(
        model, layout, input_ids, attention_mask, max_new_tokens=budget, do_sample=False, sequence_bias=force_boi
    )
    new = guarded[:, input_ids.shape[1] :]
    assert not (new == layout.boi_id).any() and not layout.is_image_token(new).any()


def test_max_images_caps_boi(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=2, seed=3)
    sequences = generate_interleaved(
        model, layout, input_ids, attention_mask, max_images=2,
        max_new_tokens=4 * (layout.tokens_per_image + 2), do_sample=True, temperature=1.0,
        sequence_bias={(layout.boi_id,): 50.0},
    )
    for row in sequences[:, input_ids.shape[1] :]:
        images, unfinished = check_grammar(row.tolist(), layout, max_images=2)
        assert images == 2 and not unfinished


def test_kv_cache_does_not_change_greedy_output(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=3, seed=11)
    kwargs = dict(max_new_tokens=50, do_sample=False, sequence_bias={(layout.boi_id,): 2.0})
    cached = generate_interleaved(model, layout, input_ids, attention_mask, use_cache=True, **kwargs)
    uncached = generate_interleaved(model, layout, input_ids, attention_mask, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert (cached == layout.boi_id).any()


def test_static_cache_samples_what_the_dynamic_cache_samples_and_attends_to_the_written_prefix(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=3, seed=13)
    kwargs = dict(max_new_tokens=40, do_sample=True, temperature=1.0, num_return_sequences=2,
                  sequence_bias={(layout.boi_id,): 2.0})
    runs = {}
    for kv_cache in ("static", "dynamic"):
        torch.manual_seed(7)
        runs[kv_cache] = generate_interleaved(model, layout, input_ids, attention_mask, **kwargs, **cache_kwargs(kv_cache))
    assert torch.equal(runs["static"], runs["dynamic"])

    prepared = with_cache(model, input_ids, None, {"max_new_tokens": 40, **cache_kwargs("static")})
    cache = prepared["past_key_values"]
    assert "cache_implementation" not in prepared and cache.get_max_cache_shape() == input_ids.shape[1] + 40
    layer = cache.layers[0]
    keys = torch.randn(6, 4, input_ids.shape[1], 8)
    seen_keys, _ = layer.update(keys, keys.clone())
    assert seen_keys.shape[2] == input_ids.shape[1] and torch.equal(seen_keys, keys)
    assert layer.get_mask_sizes(1) == (input_ids.shape[1] + 1, 0)
    step = torch.randn(6, 4, 1, 8)
    seen_keys, _ = layer.update(step, step.clone())
    assert seen_keys.shape[2] == input_ids.shape[1] + 1 and torch.equal(seen_keys[:, :, -1:], step)


def test_num_return_sequences_and_config_kwargs(tiny_chameleon, cfg):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=2, seed=5)
    section = cfg.generation.model_copy(update={"max_new_tokens": 24})
    torch.manual_seed(0)
    sequences = generate_interleaved(
        model, layout, input_ids, attention_mask, num_return_sequences=2, **generation_kwargs(section)
    )
    assert sequences.shape[0] == 4 and sequences.shape[1] <= input_ids.shape[1] + 24
    for row in sequences[:, input_ids.shape[1] :]:
        check_grammar(row.tolist(), layout)


def test_prompt_ending_inside_an_image_is_completed(tiny_chameleon):
    """Forcing via the prompt: the state is read from the prompt, the image gets finished."""
    model, layout, tokenizer = tiny_chameleon.model, tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = Trajectory(question="Where is the flag?", final_answer="left")
    prompt = pack_prompt(traj, layout, tokenizer, [])
    started = 5
    prefix = tokenizer("\u0120THOUGHT 1: zoom in.\nACTION: ZOOM(0.1, 0.1, 0.5, 0.5)\n", add_special_tokens=False)["input_ids"]
    forced = torch.tensor([layout.reasoning_open_id, *prefix, layout.boi_id, *range(layout.image_token_start, layout.image_token_start + started)])
    input_ids = torch.cat([prompt, forced]).unsqueeze(0)
    sequences = generate_interleaved(model, layout, input_ids, torch.ones_like(input_ids), max_new_tokens=40, do_sample=False)
    new = sequences[0, input_ids.shape[1] :].tolist()
    rest = layout.tokens_per_image - started
    assert all(layout.image_token_start <= token < layout.image_token_end for token in new[:rest])
    assert new[rest] == layout.eoi_id
    check_grammar(new[rest + 1 :], layout)
    text, codes = decode_interleaved(tokenizer, layout, sequences[0, prompt.shape[0] :])
    assert codes.shape == (1, layout.tokens_per_image) and text.count(IMAGE_SLOT) == 1
    assert "ACTION: ZOOM(0.1, 0.1, 0.5, 0.5)" in text


def test_grammar_accepts_every_packed_trajectory(tiny_chameleon):
    """Teacher forcing a packed answer through the processor: no target token is masked."""
    layout, tokenizer = tiny_chameleon.layout, tiny_chameleon.tokenizer
    traj = Trajectory(
        question="Which way?",
        input_images=("v0",),
        steps=(
            Step(rationale="Zoom.", action=Zoom(x=0.0, y=0.0, w=0.5, h=0.5), has_image=True),
            Step(rationale="Free image.", has_image=True),
        ),
        final_answer="up",
    )
    codes = [torch.randint(0, layout.num_codes, (layout.tokens_per_image,)) for _ in range(3)]
    packed = pack_trajectory(traj, layout, tokenizer, codes, max_length=4096)
    start = int((packed.labels == IGNORE_INDEX).sum())
    ids = packed.input_ids.unsqueeze(0)  # [1, L]
    processor = InterleavedLogitsProcessor(layout, batch_size=1, max_images=2)
    for length in range(start, ids.shape[1]):
        scores = processor(ids[:, :length], torch.zeros(1, layout.vocab_size))
        assert torch.isfinite(scores[0, ids[0, length]]), f"position {length}: {ids[0, length]} masked"
        assert torch.isfinite(scores).sum() >= 1


def test_incremental_state_matches_state_from_scratch(tiny_chameleon):
    layout = tiny_chameleon.layout
    generator = torch.Generator().manual_seed(0)
    pool = torch.tensor([layout.boi_id, layout.eoi_id, layout.eos_id, 80, 81, 4, 5, 6, 7])
    ids = pool[torch.randint(0, len(pool), (4, 40), generator=generator)]  # [4, 40], not grammatical
    prompt_length = 6
    state = interleave_state(ids[:, :prompt_length], prompt_length, layout)
    for length in range(prompt_length + 1, ids.shape[1] + 1):
        state = advance_state(state, ids[:, length - 1], layout)
        scratch = interleave_state(ids[:, :length], prompt_length, layout)
        assert torch.equal(state.in_image, scratch.in_image)
        assert torch.equal(state.image_pos, scratch.image_pos)
        assert torch.equal(state.image_count, scratch.image_count)


def test_processor_checks_batch_and_generate_rejects_beams(tiny_chameleon):
    layout = tiny_chameleon.layout
    processor = InterleavedLogitsProcessor(layout, batch_size=2)
    with pytest.raises(ValueError, match="batch 2, got 3"):
        processor(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, layout.vocab_size))
    input_ids = torch.tensor([[layout.bos_id, 80]])
    with pytest.raises(ValueError, match="beam search"):
        generate_interleaved(tiny_chameleon.model, layout, input_ids, num_beams=2, max_new_tokens=4)


def test_split_segments_keeps_complete_images_only(tiny_chameleon):
    layout = tiny_chameleon.layout
    image = list(range(layout.image_token_start, layout.image_token_start + layout.tokens_per_image))
    ids = (
        [layout.reasoning_open_id, 80, layout.boi_id, *image, layout.eoi_id, 81]
        + [layout.boi_id, *image[:3], layout.eoi_id]  # too short
        + [image[0], layout.eoi_id, 82]  # stray image token and EOI
        + [layout.boi_id, *image, layout.eoi_id]
        + [layout.eos_id, layout.pad_id, 83]
    )
    text_ids, codes = split_segments(torch.tensor(ids), layout)
    assert text_ids == [layout.reasoning_open_id, 80, IMAGE_PLACEHOLDER_ID, 81, 82, IMAGE_PLACEHOLDER_ID]
    assert len(codes) == 2 and all(torch.equal(c, torch.arange(layout.tokens_per_image)) for c in codes)
    assert scan_segments(ids, layout).malformed_images == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_processor_steps_without_host_sync_on_cuda(tiny_chameleon):
    layout = tiny_chameleon.layout
    ids = torch.randint(layout.answer_close_id + 1, layout.vocab_size, (4, 30), device="cuda")
    ids[:, 12] = layout.boi_id
    scores = torch.zeros(4, layout.vocab_size, device="cuda")
    processor = InterleavedLogitsProcessor(layout, batch_size=4, max_images=2, max_new_tokens=20)
    processor(ids[:, :10], scores)  # first call builds the mask table
    torch.cuda.set_sync_debug_mode("error")
    try:
        for length in range(11, 30):
            out = processor(ids[:, :length], scores)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda"


def test_processor_reused_across_generate_calls(tiny_chameleon):
    """A second call with a shorter prompt restarts the state (prompt length, image count)."""
    layout = tiny_chameleon.layout
    image = list(range(layout.image_token_start, layout.image_token_start + layout.tokens_per_image))
    processor = InterleavedLogitsProcessor(layout, batch_size=1, max_images=1)
    first = torch.tensor([[layout.bos_id, 80, layout.boi_id, *image, layout.eoi_id, 81]])
    processor(first[:, :2], torch.zeros(1, layout.vocab_size))
    for length in range(3, first.shape[1] + 1):
        scores = processor(first[:, :length], torch.zeros(1, layout.vocab_size))
    assert torch.isinf(scores[0, layout.boi_id])  # one image already: BOI refused
    again = processor(torch.tensor([[layout.bos_id, 90]]), torch.zeros(1, layout.vocab_size))
    assert torch.isfinite(again[0, layout.boi_id])


def test_decode_step_counter_counts_new_tokens_and_changes_nothing(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=3, seed=4)
    kwargs = dict(max_new_tokens=30, do_sample=True, temperature=1.0, top_p=0.95)
    torch.manual_seed(7)
    plain = generate_interleaved(model, layout, input_ids, attention_mask, **kwargs)
    steps: list[int] = []
    torch.manual_seed(7)
    counted = generate_interleaved(
        model, layout, input_ids, attention_mask, streamer=DecodeStepCounter(steps.append), **kwargs
    )
    assert torch.equal(plain, counted)  # same seed, same samples: the counter draws nothing
    assert steps == list(range(1, counted.shape[1] - input_ids.shape[1] + 1))  # one call per new token


def test_text_only_equals_the_stock_model_and_never_emits_an_image_token(tiny_chameleon) -> None:
    """text_only decoding = upstream Chameleon (image logits at the dtype minimum), greedy."""
    from omni_r1.model.generation import generate_text_only

    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    prompt = torch.tensor([[layout.bos_id, 40, 41, 42]])  # [1, 4]
    kwargs = {"max_new_tokens": 12, "do_sample": False, "eos_token_id": layout.eos_id, "pad_token_id": layout.pad_id}
    # a strong bias towards an image token: the mask must still keep it out
    image_token = int(layout.codes_to_ids(torch.tensor([0]))[0])
    biased = {**kwargs, "sequence_bias": {(image_token,): 50.0}}
    with_image_logits(model)  # even a model switched to keep image logits decodes text only
    ours = generate_text_only(model, layout, prompt, torch.ones_like(prompt), **biased)  # [1, 4 + N]
    assert not bool(layout.is_image_token(ours[0, 4:]).any())
    unbiased = generate_text_only(model, layout, prompt, torch.ones_like(prompt), **kwargs)
    # the reference: image-token logits forced to the minimum by hand, step by step
    ids = prompt.clone()
    for _ in range(unbiased.shape[1] - 4):
        logits = model(input_ids=ids).logits[:, -1].float()  # [1, V]
        logits[:, layout.is_image_token(torch.arange(logits.shape[1]))] = float("-inf")
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        if int(ids[0, -1]) == layout.eos_id:
            break
    assert torch.equal(unbiased[0, : ids.shape[1]], ids[0])


def test_inverse_cdf_sampler_draws_from_the_processed_distribution() -> None:
    from omni_r1.model.generation import InverseCdfSampler

    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.0, -1.0]]).expand(40_000, -1)  # [B, V]
    torch.manual_seed(0)
    chosen = InverseCdfSampler()(torch.zeros(40_000, 1, dtype=torch.long), logits.clone())  # [B, V]
    assert torch.isfinite(chosen).sum(dim=-1).eq(1).all()  # one finite score per row: greedy picks it
    tokens = chosen.argmax(dim=-1)
    frequencies = torch.bincount(tokens, minlength=5).double() / tokens.numel()
    expected = logits[0].double().softmax(dim=-1)
    assert frequencies[2] == 0  # a masked token is never drawn
    torch.testing.assert_close(frequencies, expected, atol=0.01, rtol=0)


def test_sampling_keeps_hf_warpers_and_row_order(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, attention_mask = _prompts(layout, batch=2, seed=17)
    common = dict(max_new_tokens=30, sequence_bias={(layout.boi_id,): 2.0})
    greedy = generate_interleaved(model, layout, input_ids, attention_mask, do_sample=False, **common)
    # a nucleus this small keeps only the most likely token: sampling must give the greedy answer
    nucleus = generate_interleaved(
        model, layout, input_ids, attention_mask, do_sample=True, top_p=1e-6, top_k=0, num_return_sequences=3, **common
    )
    assert torch.equal(nucleus, greedy.repeat_interleave(3, dim=0))
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(generate_interleaved(model, layout, input_ids, attention_mask, do_sample=True, temperature=1.5,
                                         top_k=0, num_return_sequences=2, **common))
    assert torch.equal(runs[0], runs[1])  # seeded
    assert not torch.equal(runs[0][0::2], greedy)  # and really sampled
