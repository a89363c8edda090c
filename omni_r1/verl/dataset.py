"""verl's ``RLHFDataset`` for Chameleon: rows of :mod:`omni_r1.verl.data` → the local engine's prompt ids.

verl 0.9.1 builds rollout prompts in its agent loop from chat messages and an image
processor; Chameleon (Anole) has neither a chat template the paper uses nor a processor
path for cached codes. This class (``data.custom_cls``) keeps verl's dataset machinery
(parquet reading, shuffling, checkpointed dataloader) and adds ``prompt_ids`` to every
item, packed by :func:`omni_r1.model.packing.pack_prompt_text`, the function the local
engine packs its prompts with: BOS, the question with each input image as BOI + codes +
EOI, the instruction. :class:`omni_r1.verl.agent_loop.OmniAgentLoop` sends those ids to the
rollout server as they are.

The token layout is read from the checkpoint the tokenizer was loaded from
(``tokenizer.name_or_path``, a ``load_omni`` folder).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import AutoConfig
from verl.utils.dataset.rl_dataset import RLHFDataset

from omni_r1.model.layout import TokenLayout
from omni_r1.model.packing import pack_prompt_text


def prompt_ids_of_row(row: dict[str, Any], layout: TokenLayout, tokenizer: Any) -> list[int]:
    """The packed prompt ids [P] of one parquet row (its user message and input codes)."""
    messages = row["prompt"]
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise ValueError(f"record {row['extra_info']['record_id']!r}: prompt must be one user message")
    codes = [torch.tensor(image, dtype=torch.long) for image in row["extra_info"]["input_codes"]]
    return pack_prompt_text(messages[0]["content"], layout, tokenizer, codes).tolist()


class OmniRLHFDataset(RLHFDataset):
    """``RLHFDataset`` whose items also carry ``prompt_ids``, the local engine's packing."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        super().__init__(data_files, tokenizer, config, processor=None, max_samples=max_samples)
        model_config = AutoConfig.from_pretrained(tokenizer.name_or_path)
        self.layout = TokenLayout.from_model(model_config, tokenizer)

    def _build_messages(self, example: dict, key: str) -> list:
        """The messages as stored: images enter as codebook tokens, not through a processor."""
        return copy.deepcopy(list(example[key]))

    def __getitem__(self, item):
        row = self.dataframe[item]
        prompt_ids = prompt_ids_of_row(row, self.layout, self.tokenizer)
        if len(prompt_ids) > self.max_prompt_length:
            raise ValueError(
                f"record {row['extra_info']['record_id']!r}: {len(prompt_ids)} prompt tokens > "
                f"data.max_prompt_length {self.max_prompt_length} (perpo.verl.max_prompt_length)"
            )
        item_dict = super().__getitem__(item)
        item_dict["prompt_ids"] = prompt_ids
        return item_dict
