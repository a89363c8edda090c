"""Training mixes of the paper (Appendix C), as seeded streaming selections.

PeRPO prompts: ~10% of Zebra-CoT + 1K ArxivQA + 250 Geometry3K (``data.perpo_mix``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from omni_r1.config import PerpoMixConfig
from omni_r1.data.omnibench import seeded_fraction, seeded_take
from omni_r1.data.records import Record


def perpo_mix(
    mix: PerpoMixConfig,
    seed: int,
    zebra_cot: Iterable[Record] | None = None,
    arxivqa: Iterable[Record] | None = None,
    geometry3k: Iterable[Record] | None = None,
) -> Iterator[Record]:
    """The PeRPO prompt set from whichever of the three sources are given.

    Args:
        mix: ``zebra_cot_fraction``, ``arxivqa`` and ``geometry3k`` counts.
        seed: selection seed (same seed, same records).
        zebra_cot, arxivqa, geometry3k: the sources' training records (streams).
    """
    if zebra_cot is not None:
        yield from seeded_fraction(zebra_cot, mix.zebra_cot_fraction, seed)
    if arxivqa is not None:
        yield from seeded_take(arxivqa, mix.arxivqa, seed)
    if geometry3k is not None:
        yield from seeded_take(geometry3k, mix.geometry3k, seed)
