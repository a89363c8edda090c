"""Training: the pure math and the trainers built on it.

Pure tensor functions with no trainer state: the PeSFT losses (:mod:`.losses`, paper §4.1)
and the PeRPO/GRPO objectives (:mod:`.grpo`, paper §4.2). Built on them: the PeSFT trainer on
the HF Trainer (:mod:`.pesft`), the Omni-R1-Zero bootstrap (:mod:`.bootstrap`), PeRPO rollouts
(:mod:`.rollout`), the PeRPO trainer (:mod:`.perpo`) and its report (:mod:`.perpo_report`),
and resumable checkpoints (:mod:`.checkpoint`).
"""
