"""Names of evaluated checkpoints: ``(track, step)`` → checkpoint folder, metrics and outputs.

Step names, the one vocabulary shared by ``omni-r1 evaluate --step``, the metrics file names
and the report tables:

| step | checkpoint folder (under ``paths.checkpoints_dir``) | paper name |
|---|---|---|
| ``base`` | none: the configured base model (``model.local_dir`` / ``model.pretrained_id``) | Anole |
| ``pesft`` | ``<track>/pesft/`` | PeSFT only (Table 4 "w/o PeRPO") |
| ``<k>`` (digits) | ``<track>/perpo/step_<k>/`` | Omni-R1-M/-L (30/60), Zero-T/S/M (10/20/30) |
| ``no_perception_<k>`` | ``<track>/perpo_no_perception/step_<k>/`` | Table 4 "w/o PeReward" |

Metrics: ``<metrics_dir>/omnibench_<track>_<step>.json``; predictions
``<eval.predictions_dir>/<track>_<step>.parquet``; gallery ``<eval.gallery_dir>/<track>_<step>.html``.
Tracks are ``omni_r1`` and ``omni_r1_zero``; a file name is read back by matching the longest
track name first, so ``omnibench_omni_r1_zero_10`` is track ``omni_r1_zero``, step ``10``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omni_r1.config import TRACKS, Config

BASE_STEP = "base"
PESFT_STEP = "pesft"
NO_PERCEPTION_PREFIX = "no_perception_"
METRICS_PREFIX = "omnibench_"

_STEP_RE = re.compile(rf"^(?:{BASE_STEP}|{PESFT_STEP}|\d+|{NO_PERCEPTION_PREFIX}\d+)$")


class StepError(ValueError):
    """A track or step name outside the vocabulary above."""


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """One evaluated checkpoint: a track and a step name."""

    track: str
    step: str

    def __post_init__(self) -> None:
        if self.track not in TRACKS:
            raise StepError(f"unknown track {self.track!r} (known: {', '.join(TRACKS)})")
        if not _STEP_RE.match(self.step):
            raise StepError(
                f"unknown step {self.step!r}: expected base | pesft | <k> | {NO_PERCEPTION_PREFIX}<k>"
            )

    @property
    def name(self) -> str:
        """``<track>_<step>``, the stem of the predictions and gallery files."""
        return f"{self.track}_{self.step}"

    @property
    def kind(self) -> str:
        """``base`` | ``pesft`` | ``perpo`` | ``no_perception``."""
        if self.step in (BASE_STEP, PESFT_STEP):
            return self.step
        return "no_perception" if self.step.startswith(NO_PERCEPTION_PREFIX) else "perpo"

    @property
    def perpo_step(self) -> int | None:
        """The PeRPO optimiser step for ``<k>`` and ``no_perception_<k>``; None otherwise."""
        digits = self.step.removeprefix(NO_PERCEPTION_PREFIX)
        return int(digits) if digits.isdigit() else None

    def checkpoint_dir(self, checkpoints_dir: Path | str) -> Path | None:
        """The folder ``load_omni(cfg, model_dir=...)`` reads; None for ``base``."""
        root = Path(checkpoints_dir) / self.track
        if self.kind == "base":
            return None
        if self.kind == "pesft":
            return root / "pesft"
        folder = "perpo" if self.kind == "perpo" else "perpo_no_perception"
        return root / folder / f"step_{self.perpo_step}"

    def metrics_path(self, metrics_dir: Path | str) -> Path:
        return Path(metrics_dir) / f"{METRICS_PREFIX}{self.name}.json"


def parse_metrics_name(path: Path | str) -> CheckpointRef:
    """``metrics/omnibench_omni_r1_zero_no_perception_10.json`` → ref(omni_r1_zero, no_perception_10).

    Raises:
        StepError: the file name does not follow ``omnibench_<track>_<step>.json``.
    """
    stem = Path(path).stem
    if not stem.startswith(METRICS_PREFIX):
        raise StepError(f"{path}: not an Omni-Bench metrics file (omnibench_<track>_<step>.json)")
    rest = stem.removeprefix(METRICS_PREFIX)
    for track in sorted(TRACKS, key=len, reverse=True):
        if rest.startswith(track + "_"):
            try:
                return CheckpointRef(track, rest.removeprefix(track + "_"))
            except StepError as err:
                raise StepError(f"{path}: {err}") from err
    raise StepError(f"{path}: no known track in {stem!r} (known: {', '.join(TRACKS)})")


def is_configured(ref: CheckpointRef, cfg: Config) -> bool:
    """Whether the params define ``ref``: a track of ``pesft.datasets``, a step of
    ``perpo.save_steps`` (``eval.ablation_steps`` for the no-perception run)."""
    if ref.track not in cfg.pesft.datasets:
        return False
    if ref.kind == "perpo":
        return ref.perpo_step in cfg.perpo.save_steps
    if ref.kind == "no_perception":
        return ref.perpo_step in cfg.eval.ablation_steps
    return True
