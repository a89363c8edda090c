"""The vLLM plugin's grammar is the local engine's state machine; the vLLM parts where vLLM imports."""

from __future__ import annotations

import importlib
import tomllib

import pytest
import torch

from omni_r1.model.generation import InterleavedLogitsProcessor, scan_segments
from omni_r1.verl.vllm_plugin import EXTRA_ARG, InterleaveRequest, request_processor


def _sample(request: InterleaveRequest, layout, steps: int, seed: int) -> list[int]:
    """Random logits, BOI favoured so that images are opened, sampled under the grammar."""
    generator = torch.Generator().manual_seed(seed)
    output: list[int] = []
    for _ in range(steps):
        logits = torch.randn(layout.vocab_size, generator=generator) * 4  # [V]
        logits[layout.boi_id] += 12.0
        masked = request(output, logits)  # [V]
        output.append(int(torch.multinomial(torch.softmax(masked, -1), 1, generator=generator)))
    return output


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_logits_under_the_request_grammar_give_only_complete_images(shared_tiny_chameleon, seed):
    layout = shared_tiny_chameleon.layout
    budget = 120
    request = request_processor(layout, {EXTRA_ARG: 2}, max_tokens=budget)
    output = _sample(request, layout, budget, seed)
    segments = scan_segments(output, layout)
    assert segments.malformed_images == 0
    assert len(segments.codes) == output.count(layout.boi_id) == 2  # the cap, reached


def test_request_masks_equal_the_hf_processors_at_every_step(shared_tiny_chameleon):
    layout = shared_tiny_chameleon.layout
    budget = 60
    output = _sample(request_processor(layout, {EXTRA_ARG: 1}, budget), layout, budget, 5)
    assert layout.boi_id in output  # the walk passes through an image
    prompt = torch.tensor([[layout.bos_id, 40, 41, 42]])  # [1, 4] a text prompt
    hf = InterleavedLogitsProcessor(layout, 1, max_images=1, max_new_tokens=budget)
    request = InterleaveRequest(layout, max_images=1, max_new_tokens=budget)
    zeros = torch.zeros(layout.vocab_size)
    for step in range(budget):
        ids = torch.cat([prompt, torch.tensor([output[:step]], dtype=torch.long)], dim=1)  # [1, 4+step]
        expected = torch.isinf(hf(ids, zeros.unsqueeze(0))[0])
        assert torch.equal(torch.isinf(request(output[:step], zeros)), expected), f"step {step}"


def test_requests_without_the_extra_arg_are_left_alone(shared_tiny_chameleon):
    assert request_processor(shared_tiny_chameleon.layout, None, 10) is None
    assert request_processor(shared_tiny_chameleon.layout, {"other": 1}, 10) is None


def test_pyproject_entry_points_name_the_plugin(repo_root):
    entry_points = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["entry-points"]
    assert entry_points["vllm.general_plugins"]["omni_r1_chameleon"] == "omni_r1.verl.vllm_plugin:register"
    module, name = entry_points["vllm.logits_processors"]["omni_r1_interleave"].split(":")
    assert module == "omni_r1.verl.vllm_chameleon" and name == "InterleaveLogitsProcessor"
    assert callable(importlib.import_module("omni_r1.verl.vllm_plugin").register)


def test_vllm_classes_load_where_vllm_is_installed():
    pytest.importorskip(
        "vllm", reason="vLLM is not on the CPU stack; the cluster image (infra/images/verl) installs vllm==0.24.0"
    )
    from vllm import ModelRegistry

    from omni_r1.verl.vllm_chameleon import InterleaveLogitsProcessor, OmniVllmChameleon
    from omni_r1.verl.vllm_plugin import ARCHITECTURE, register

    register()
    assert ARCHITECTURE in ModelRegistry.get_supported_archs()
    assert OmniVllmChameleon.compute_logits is not None and InterleaveLogitsProcessor.is_argmax_invariant
