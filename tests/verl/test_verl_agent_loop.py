"""The agent loop sends the dataset's prompt ids and asks for the interleave grammar.

The rollout server here is the tiny model itself, sampling token by token and applying the
vLLM plugin's per-request grammar to the request exactly as vLLM would (``extra_args``).
"""

from __future__ import annotations

import torch
from verl_helpers import make_codes, make_records

from omni_r1.model.generation import scan_segments
from omni_r1.model.logits import forward_logits
from omni_r1.training.rollout import build_prompts
from omni_r1.verl.settings import VerlPaths, hydra_args, verl_overrides
from omni_r1.verl.vllm_plugin import request_processor


class TinyModelServer:
    """``generate`` of verl's server manager, answered by a tiny Chameleon on CPU."""

    def __init__(self, tiny, seed: int):
        self.tiny, self.generator, self.requests = tiny, torch.Generator().manual_seed(seed), []

    async def generate(self, request_id, prompt_ids, sampling_params, priority=0, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.requests.append((list(prompt_ids), dict(sampling_params)))
        max_tokens = sampling_params["max_tokens"]
        grammar = request_processor(self.tiny.layout, sampling_params.get("extra_args"), max_tokens)
        output: list[int] = []
        with torch.no_grad():
            for _ in range(max_tokens):
                ids = torch.tensor([list(prompt_ids) + output])  # [1, P+n]
                logits = forward_logits(self.tiny.model, ids).logits[0, -1]  # [V]
                logits = grammar(output, logits) if grammar is not None else logits
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator))
                output.append(token)
                if token == self.tiny.layout.eos_id:
                    break
        return TokenOutput(token_ids=output)


def test_agent_loop_rolls_out_the_local_prompt_ids_under_the_grammar(compose_verl, cfg, tiny_checkpoint):
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap

    from omni_r1.verl.agent_loop import OmniAgentLoop
    from omni_r1.verl.dataset import OmniRLHFDataset

    folder, tiny = tiny_checkpoint
    records = make_records(2)
    prompts = build_prompts(records, make_codes(records, tiny.layout), tiny.layout, tiny.tokenizer, "perpo_train")
    config = compose_verl(hydra_args(verl_overrides(cfg, "omni_r1", VerlPaths(str(folder), "t", "t", "c", "a"))))
    server = TinyModelServer(tiny, seed=0)
    loop = OmniAgentLoop(
        trainer_config=DictConfigWrap(config), server_manager=server, tokenizer=AutoTokenizer.from_pretrained(folder),
        processor=None, dataset_cls=OmniRLHFDataset, data_config=DictConfigWrap(config.data),
    )  # fmt: skip
    boi_bias = torch.zeros(tiny.layout.vocab_size)
    boi_bias[tiny.layout.boi_id] = 8.0  # a random model seldom opens an image by itself
    tiny.model.lm_head.bias = torch.nn.Parameter(boi_bias)

    outputs = []
    for prompt in prompts:
        params = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 60}
        outputs.append(loop.loop.run_until_complete(loop.run(params, prompt_ids=prompt.prompt_ids.tolist())))

    for (sent, params), prompt, output in zip(server.requests, prompts, outputs, strict=True):
        assert sent == prompt.prompt_ids.tolist() == output.prompt_ids
        assert params["extra_args"] == {"omni_r1_max_images": cfg.generation.max_images_per_answer}
        assert len(output.response_ids) == len(output.response_mask) <= config.actor_rollout_ref.rollout.response_length
        segments = scan_segments(output.response_ids, tiny.layout)
        assert segments.malformed_images == 0
    assert sum(len(scan_segments(o.response_ids, tiny.layout).codes) for o in outputs) >= 1
