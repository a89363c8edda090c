"""VLMEvalKit adapter: message handling (images → codes → prompt ids, text joined) and the answer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from omni_r1.eval.evaluate import decoding_kwargs, generate_responses
from omni_r1.eval.vlmevalkit import OmniR1VLM, split_message
from omni_r1.model.images import encode_images
from omni_r1.model.packing import pack_prompt
from omni_r1.rewards.accuracy import extract_final_answer
from omni_r1.trajectory import Trajectory


@pytest.fixture
def message(tmp_path) -> list[dict]:
    red = tmp_path / "red.png"
    Image.new("RGB", (40, 40), (220, 30, 30)).save(red)
    return [
        {"type": "image", "value": str(red)},
        {"type": "text", "value": "How many red squares are there?"},
        {"type": "image", "value": Image.new("RGB", (32, 32), (20, 20, 200))},
        {"type": "text", "value": " Answer with a number. "},
    ]


def test_split_message_keeps_image_order_and_joins_text(message) -> None:
    images, text = split_message(message)
    assert [im.getpixel((0, 0)) for im in images] == [(220, 30, 30), (20, 20, 200)]
    assert text == "How many red squares are there?\nAnswer with a number."
    assert split_message("plain question ") == ([], "plain question")
    with pytest.raises(ValueError, match="part 1: type 'video'"):
        split_message([{"type": "text", "value": "a"}, {"type": "video", "value": "v.mp4"}])


def test_prompt_ids_hold_the_image_codes_and_the_text(message, tiny_omni, cfg) -> None:
    adapter = OmniR1VLM(tiny_omni, cfg.generation.model_copy(update={"max_new_tokens": 30}), cfg.eval.decoding)
    ids = adapter.prompt_ids(message)  # [P]
    images, text = split_message(message)
    codes = encode_images(tiny_omni, images)  # [2, H*W]
    expected = pack_prompt(
        Trajectory(question=text, input_images=tuple(images), final_answer=""),
        tiny_omni.layout, tiny_omni.tokenizer, list(codes),
    )  # fmt: skip
    assert torch.equal(ids, expected)
    layout = tiny_omni.layout
    assert int((ids == layout.boi_id).sum()) == 2 and int((ids == layout.eoi_id).sum()) == 2
    first = int((ids == layout.boi_id).nonzero()[0])
    assert torch.equal(ids[first + 1 : first + 1 + layout.tokens_per_image], layout.codes_to_ids(codes[0]))
    assert "How many red squares" in tiny_omni.tokenizer.decode(ids.tolist())


def test_generate_returns_the_final_answer_string(message, tiny_omni, cfg) -> None:
    generation = cfg.generation.model_copy(update={"max_new_tokens": 30})
    adapter = OmniR1VLM(tiny_omni, generation, "greedy")
    answer = adapter.generate(message, dataset="MME")
    assert isinstance(answer, str)
    reference = generate_responses(
        tiny_omni, [adapter.prompt_ids(message)], decoding_kwargs(generation, "greedy"), generation.max_images_per_answer, 1
    )[0].text  # fmt: skip
    extracted = extract_final_answer(reference)
    assert answer == (extracted if extracted is not None else reference.replace("<image>", " ").strip())
    assert "<image>" not in answer
