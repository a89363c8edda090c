"""Training math: PeSFT losses (:mod:`.losses`) and PeRPO/GRPO objectives (:mod:`.grpo`).

Pure functions only; trainers and stages build on them.
"""
