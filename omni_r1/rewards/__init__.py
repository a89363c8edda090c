"""PeRPO rewards (paper §4.2): accuracy (Appendix B), format, perception, and their combination.

Every variant is a pure function chosen by name from the tables in
:mod:`omni_r1.rewards.registry`; :func:`omni_r1.rewards.registry.score_batch` scores a batch.
"""
