"""The cluster engine: PeRPO as a verl job on Ray (``perpo.engine: verl``).

Same reward, loss, group filter and checkpoints as the local engine
(:mod:`omni_r1.training.perpo`); verl runs the loop (vLLM rollouts, FSDP actor and
reference). The modules:

- :mod:`omni_r1.verl.settings`: params.yaml → verl hydra overrides (one pure function) and
  the config-time checks of ``engine: verl``;
- :mod:`omni_r1.verl.data`: the PeRPO prompts as verl's RLHF parquet;
- :mod:`omni_r1.verl.dataset`: the dataset class that packs those rows into the local
  engine's prompt ids, and :mod:`omni_r1.verl.agent_loop`, the rollout loop that sends them;
- :mod:`omni_r1.verl.reward`: the reward manager (token ids in, the local engine's scorer);
- :mod:`omni_r1.verl.actor`: the unmasked Chameleon for verl's actor and reference;
- :mod:`omni_r1.verl.vllm_plugin`: the vLLM model plugin (image logits open, interleave grammar);
- :mod:`omni_r1.verl.launch`: export, resolved config, RayJob manifest, ``ray job submit``,
  merge-back of checkpoints.

Nothing here is imported by the local engine; only the modules that need verl import it.
"""
