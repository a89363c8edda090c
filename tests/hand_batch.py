"""A hand-built token layout and scored batch for reward tests whose values are worked out by hand.

Ids: BOS 0, pad 1, EOS 2, image codes 10..13 (four 2-D codebook vectors on a 2x2 grid), EOI 20,
BOI 21, text 26..29. Row 0 holds one complete image, row 1 none (right-padded).
"""

from __future__ import annotations

import torch

from omni_r1.model.layout import TokenLayout

HAND_LAYOUT = TokenLayout(
    bos_id=0, pad_id=1, eos_id=2, boi_id=21, eoi_id=20, image_token_start=10, num_codes=4,
    grid_h=2, grid_w=2, image_size=16, reasoning_open_id=22, reasoning_close_id=23,
    answer_open_id=24, answer_close_id=25, vocab_size=30,
)  # fmt: skip
HAND_CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 2.0]])  # [K=4, D=2]
HAND_IDS = torch.tensor([[26, 21, 10, 11, 12, 13, 20, 27], [26, 27, 28, 29, 1, 1, 1, 1]])  # [2, 8]
HAND_MASK = torch.tensor([[1] * 8, [1] * 4 + [0] * 4])  # [2, 8]
