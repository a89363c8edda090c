"""Typed configuration: one pydantic model per section of params.yaml.

params.yaml is the only home of default values. The models here declare types and
constraints but no defaults, so a key missing from params.yaml is an error, and
``extra="forbid"`` makes an unknown or misspelt key an error that names its path.

Overlays (for example ``params/paper.yaml``) hold only the keys that differ and are
merged on top of params.yaml, key by key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")
TRACKS = ("omni_r1", "omni_r1_zero")  # the training tracks: Omni-R1 and Omni-R1-Zero (paper §4)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
RGB = tuple[int, int, int]


class Section(BaseModel):
    """Base of every params.yaml section: strict keys, immutable values."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(Section):
    seed: int
    device: Literal["auto", "cpu", "cuda"]


class PathsConfig(Section):
    """Output roots shared by the stages that write and the stages that read them."""

    checkpoints_dir: str
    metrics_dir: str


class TrackingConfig(Section):
    experiment: str
    tracking_uri: str
    registered_model: str
    champion_alias: str
    challenger_alias: str
    log_system_metrics: bool


class TrajectoryConfig(Section):
    coordinate_decimals: Annotated[int, Field(ge=1, le=6)]


class ExecutorConfig(Section):
    resolution: PositiveInt
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"]
    box_color: RGB
    mark_color: RGB
    line_color: RGB
    line_width: PositiveInt
    mark_radius: PositiveInt
    label_color: RGB
    wall_color: RGB
    floor_color: RGB
    agent_color: RGB
    goal_color: RGB


class GalleryConfig(Section):
    examples: PositiveInt
    out_dir: str
    metrics_path: str


class TinyModelConfig(Section):
    """Shape of the tiny Chameleon trained from scratch (same vocabulary layout as Anole)."""

    hidden_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt
    intermediate_size: PositiveInt
    max_position_embeddings: PositiveInt
    image_size: PositiveInt
    vq_base_channels: PositiveInt
    vq_channel_multiplier: list[PositiveInt]
    vq_num_res_blocks: Annotated[int, Field(ge=0)]
    vq_latent_channels: PositiveInt
    num_codes: PositiveInt
    embed_dim: PositiveInt
    text_vocab_size: PositiveInt


class ModelConfig(Section):
    source: Literal["tiny", "pretrained"]
    pretrained_id: str
    local_dir: str
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    vq_decoder_path: str | None
    pretrained_config: dict[str, Any]
    tiny: TinyModelConfig


class TokenizerConfig(Section):
    """Training of the tiny model's tokenizers: BPE for text, VQ autoencoder for images."""

    bpe_min_frequency: PositiveInt
    vq_steps: PositiveInt
    vq_batch_size: PositiveInt
    vq_lr: Annotated[float, Field(gt=0.0)]
    vq_crop_size: PositiveInt
    commitment_beta: Annotated[float, Field(ge=0.0)]
    restart_every: PositiveInt
    heldout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)]
    max_images: PositiveInt
    psnr_samples: PositiveInt
    sample_grid: PositiveInt
    metrics_path: str
    datasets: list[str]


class SyntheticDataConfig(Section):
    train_per_task: PositiveInt
    perpo_per_task: PositiveInt
    omnibench_per_slice: PositiveInt
    scene_distractors: PositiveInt
    scene_target_fraction: Annotated[float, Field(gt=0.0, lt=0.5)]
    chart_bars: Annotated[int, Field(ge=2, le=8)]
    chart_max_value: Annotated[int, Field(ge=2, le=20)]
    geometry_max_side: Annotated[int, Field(ge=8)]
    grid_size: Annotated[int, Field(ge=3, le=16)]
    grid_wall_fraction: Annotated[float, Field(ge=0.0, le=0.5)]
    grid_max_moves: Annotated[int, Field(ge=1)]


class PerpoMixConfig(Section):
    zebra_cot_fraction: Probability
    arxivqa: Annotated[int, Field(ge=0)]
    geometry3k: Annotated[int, Field(ge=0)]


class DataConfig(Section):
    sources: list[str]
    local_paths: dict[str, str]
    revisions: dict[str, str]
    hub_configs: dict[str, list[str]]
    prepared_dir: str
    encoded_dir: str
    shard_size: PositiveInt
    on_bad_record: Literal["error", "skip"]
    synthetic: SyntheticDataConfig
    perpo_mix: PerpoMixConfig
    omnibench: dict[str, dict[str, Annotated[int, Field(ge=0)]]]


class StorageConfig(Section):
    """S3-compatible object storage for checkpoints (``s3_uri`` empty = off)."""

    s3_uri: str
    endpoint_url: str
    multipart_threshold_mb: PositiveInt
    multipart_chunk_mb: Annotated[int, Field(ge=5)]
    max_retries: Annotated[int, Field(ge=0)]
    backoff_seconds: Annotated[float, Field(ge=0.0)]
    log_checkpoint_files: bool


class GenerationConfig(Section):
    """Interleaved sampling (omni_r1.model.generation)."""

    max_new_tokens: PositiveInt
    temperature: Annotated[float, Field(gt=0.0)]
    top_p: Annotated[float, Field(gt=0.0, le=1.0)]
    max_images_per_answer: Annotated[int, Field(ge=0)]


class PackingConfig(Section):
    """Trajectory → training sequence (omni_r1.model.packing)."""

    max_length: PositiveInt


class RewardConfig(Section):
    """PeRPO reward (omni_r1.rewards): variants by name, threshold, τ, weights."""

    accuracy: Literal["appendix_b", "strict"]
    partial_credit_threshold: Probability
    symbolic_timeout_s: PositiveInt
    grader_time_limit_s: Annotated[float, Field(gt=0.0)]
    grader_memory_limit_mb: Annotated[int, Field(ge=256)]
    format: Literal["trajectory", "official"]
    perception_map: Literal["exp", "inv"]
    tau: Annotated[float, Field(gt=0.0)]
    aggregation: Literal["min", "mean", "max", "median"]
    combination: Literal["official", "paper"]
    accuracy_weight: Annotated[float, Field(ge=0.0)]
    format_weight: Annotated[float, Field(ge=0.0)]
    perception_weight: Probability
    fidelity_weight: Annotated[float, Field(ge=0.0)]


class PerceptionConfig(Section):
    """PeSFT perception loss (omni_r1.training.losses)."""

    weight: Annotated[float, Field(ge=0.0)]
    train_projection: bool
    alignment: Literal["next_token", "same_position"]


class PesftConfig(Section):
    """PeSFT recipe on HF Trainer (omni_r1.training.pesft): data per track, optimiser, schedule."""

    datasets: dict[str, str]
    max_steps: PositiveInt
    per_device_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    learning_rate: Annotated[float, Field(gt=0.0)]
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"]
    warmup_steps: Annotated[int, Field(ge=0)]
    weight_decay: Annotated[float, Field(ge=0.0)]
    max_grad_norm: Annotated[float, Field(gt=0.0)]
    logging_steps: PositiveInt
    save_steps: PositiveInt
    save_total_limit: PositiveInt
    loss_window: PositiveInt
    parse_eval_dataset: str
    parse_eval_prompts: PositiveInt
    parse_eval_batch_size: PositiveInt
    strategy: Literal["ddp", "fsdp", "deepspeed_zero2"]
    precision: Literal["auto", "bf16", "fp32"]
    gradient_checkpointing: bool


class BootstrapConfig(Section):
    """Omni-R1-Zero bootstrap (omni_r1.training.bootstrap): text-only CoT -> one image per step."""

    source: str
    out_name: str
    max_records: PositiveInt
    batch_size: PositiveInt
    do_sample: bool


class BaseConfig(Section):
    """Pre-training of the tiny base on image <-> text pairs (omni_r1.training.base)."""

    out_dir: str
    metrics_path: str
    gallery_path: str
    train_pairs_per_kind: PositiveInt
    heldout_pairs_per_kind: PositiveInt
    max_steps: PositiveInt
    per_device_batch_size: PositiveInt
    learning_rate: Annotated[float, Field(gt=0.0)]
    warmup_steps: Annotated[int, Field(ge=0)]
    eval_batch_size: PositiveInt
    gallery_examples: Annotated[int, Field(ge=0)]


class GrpoConfig(Section):
    """PeRPO optimisation math (omni_r1.training.grpo), verl actor/algorithm keys."""

    adv_estimator: Literal["grpo", "rloo"]
    norm_adv_by_std: bool
    epsilon: Annotated[float, Field(gt=0.0)]
    clip_ratio_low: Annotated[float, Field(ge=0.0, lt=1.0)]
    clip_ratio_high: Annotated[float, Field(ge=0.0)]
    clip_ratio_c: Annotated[float, Field(gt=1.0)] | None
    kl_loss_coef: Annotated[float, Field(ge=0.0)]
    kl_loss_type: Literal["k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl", "k3+", "low_var_kl+"]
    entropy_coeff: Annotated[float, Field(ge=0.0)]
    loss_agg_mode: Literal[
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"
    ]


class PerpoVerlConfig(Section):
    """The cluster engine (omni_r1.verl): where the verl job runs and how it is laid out."""

    ray_address: str
    out_dir: str
    nnodes: PositiveInt
    n_gpus_per_node: PositiveInt
    rollout: Literal["vllm"]
    tensor_parallel_size: PositiveInt
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)]
    max_prompt_length: PositiveInt
    image: str
    cluster_root: str


class PerpoConfig(Section):
    """PeRPO (omni_r1.training.perpo, or verl with ``engine: verl``): rollouts, batches, schedule.

    Algorithm knobs live in ``grpo``, reward knobs in ``reward``, sampling in ``generation``.
    """

    dataset: str
    engine: Literal["local", "verl"]
    verl: PerpoVerlConfig
    max_steps: PositiveInt
    save_steps: list[PositiveInt]
    resume_every: PositiveInt
    train_batch_size: PositiveInt
    gen_batch_size: PositiveInt
    max_gen_batches: PositiveInt
    filter_metric: Literal["accuracy", "reward"]
    rollout_n: Annotated[int, Field(ge=2)]
    max_new_tokens: PositiveInt
    ppo_mini_batch_size: PositiveInt
    ppo_epochs: PositiveInt
    micro_batch_size: PositiveInt
    rollout_batch_size: PositiveInt
    kv_cache: Literal["static", "dynamic"]
    learning_rate: Annotated[float, Field(gt=0.0)]
    adam_betas: tuple[Probability, Probability]
    warmup_steps: Annotated[int, Field(ge=0)]
    weight_decay: Annotated[float, Field(ge=0.0)]
    max_grad_norm: Annotated[float, Field(gt=0.0)]
    probe_prompts: Annotated[int, Field(ge=0)]
    reward_window: PositiveInt
    gallery_examples: Annotated[int, Field(ge=0)]


class EvalConfig(Section):
    """Omni-Bench evaluation of one checkpoint (omni_r1.eval; paper §5)."""

    dataset: str
    released_bench: str
    prompt_template: Literal["ours", "official"]
    decoding: Literal["interleaved", "text_only"]
    sampling: Literal["greedy", "sample"]
    temperature: Annotated[float, Field(gt=0.0)]
    top_p: Annotated[float, Field(gt=0.0, le=1.0)]
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    kv_cache: Literal["static", "dynamic"]
    max_per_slice: Annotated[int, Field(ge=0)]
    ablation_steps: list[PositiveInt]
    predictions_dir: str
    gallery_dir: str
    gallery_examples: Annotated[int, Field(ge=0)]


class FidelityConfig(Section):
    """Generated image vs the executor's rendering of its action (omni_r1.rewards.fidelity)."""

    psnr_cap_db: Annotated[float, Field(gt=0.0)]
    headline: Literal["code_agreement", "psnr"]
    pass_threshold: Probability
    batch_size: PositiveInt


class IntervalsConfig(Section):
    """Seeded percentile-bootstrap intervals of evaluation metrics (omni_r1.eval.intervals)."""

    resamples: PositiveInt
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)]
    power: Annotated[float, Field(gt=0.0, lt=1.0)]
    target_difference: Annotated[float, Field(gt=0.0, lt=1.0)]


class LlmJudgeConfig(Section):
    """An OpenAI-compatible chat endpoint as the Appendix F judge."""

    base_url: str
    model: str
    api_key_env: str
    timeout_s: Annotated[float, Field(gt=0.0)]
    max_retries: Annotated[int, Field(ge=0)]
    backoff_s: Annotated[float, Field(ge=0.0)]
    max_tokens: PositiveInt
    concurrency: PositiveInt
    cache_path: str


class JudgeConfig(Section):
    """Which judge decides a prediction (omni_r1.eval.judges)."""

    name: Literal["rule", "llm"]
    rule_threshold: Probability
    llm: LlmJudgeConfig


class ReportConfig(Section):
    """Tables, plots data and the generated-image projection (omni_r1.eval.report)."""

    out_dir: str
    plots_dir: str
    projection: Literal["auto", "pca", "umap"]
    projection_path: str


class GeneralBenchConfig(Section):
    """Table 3's general benchmarks (omni_r1.stages.general_bench)."""

    benchmarks: dict[Literal["pope", "mme"], str]
    max_items: Annotated[int, Field(ge=0)]


class PlanConfig(Section):
    """Assumptions of the dry-run planner (omni_r1.planning)."""

    gpu_counts: list[PositiveInt]
    gpu_memory_gib: Annotated[float, Field(gt=0.0)]
    gpu_bf16_tflops: Annotated[float, Field(gt=0.0)]
    mfu: Annotated[float, Field(gt=0.0, le=1.0)]
    decode_mfu: Annotated[float, Field(gt=0.0, le=1.0)]
    pesft_sequences: PositiveInt


class StudyConfig(Section):
    """Generated vs text-only vs executor-rendered images at equal compute (omni_r1.study)."""

    regimes: list[Literal["generated", "text_only", "rendered"]] = Field(min_length=1)
    dataset: str
    text_only_dataset: str
    out_dir: str
    report_path: str
    metrics_path: str
    gallery_examples: Annotated[int, Field(ge=0)]

    @field_validator("regimes")
    @classmethod
    def _distinct(cls, regimes: list[str]) -> list[str]:
        if len(set(regimes)) != len(regimes):
            raise ValueError(f"regimes repeat: {regimes}")
        return regimes


class PromoteConfig(Section):
    """Registry promotion of the best evaluated checkpoint (omni_r1.eval.promote)."""

    min_improvement: Annotated[float, Field(ge=0.0)]
    include_ablations: bool


class GpuJobConfig(Section):
    """Kubernetes GPU jobs launched from a Prefect run (flows/gpu.py)."""

    image: str
    namespace: str
    work_pool: str
    gpus_per_node: PositiveInt
    cpu: PositiveInt
    memory_gi: PositiveInt
    shm_gi: PositiveInt
    workspace_claim: str
    s3_secret: str
    mlflow_tracking_uri: str
    overlays: list[str]


class OrchestrationConfig(Section):
    """Prefect flows: per-stage retries and timeouts, one pipeline per workspace, GPU jobs."""

    retries: Annotated[int, Field(ge=0)]
    retry_delay_s: Annotated[float, Field(ge=0.0)]
    stage_timeout_s: dict[str, PositiveInt]
    lock_file: str
    lock_wait_s: Annotated[float, Field(ge=0.0)]
    gpu: GpuJobConfig

    @field_validator("stage_timeout_s")
    @classmethod
    def _has_default(cls, value: dict[str, int]) -> dict[str, int]:
        if "default" not in value:
            raise ValueError("needs a 'default' entry (seconds for stages not listed)")
        return value


class ConsoleConfig(Section):
    """What a person sees while a stage runs (omni_r1.console)."""

    log_every_s: Annotated[float, Field(gt=0.0)]


class Config(Section):
    """The whole of params.yaml."""

    run: RunConfig
    paths: PathsConfig
    tracking: TrackingConfig
    storage: StorageConfig
    trajectory: TrajectoryConfig
    executor: ExecutorConfig
    gallery: GalleryConfig
    model: ModelConfig
    tokenizer: TokenizerConfig
    data: DataConfig
    generation: GenerationConfig
    packing: PackingConfig
    reward: RewardConfig
    perception: PerceptionConfig
    pesft: PesftConfig
    base: BaseConfig
    bootstrap: BootstrapConfig
    grpo: GrpoConfig
    perpo: PerpoConfig
    eval: EvalConfig
    fidelity: FidelityConfig
    intervals: IntervalsConfig
    judge: JudgeConfig
    report: ReportConfig
    general_bench: GeneralBenchConfig
    plan: PlanConfig
    promote: PromoteConfig
    study: StudyConfig
    orchestration: OrchestrationConfig
    console: ConsoleConfig

    @model_validator(mode="after")
    def _engine_settings_agree(self) -> Config:
        if self.perpo.engine == "verl":
            check_verl_settings(self)
        return self

    @model_validator(mode="after")
    def _ablation_steps_are_saved(self) -> Config:
        unsaved = sorted(set(self.eval.ablation_steps) - set(self.perpo.save_steps))
        if unsaved:
            raise ValueError(
                f"eval.ablation_steps {unsaved}: no such PeRPO checkpoint; each must be one of "
                f"perpo.save_steps {self.perpo.save_steps}"
            )
        return self


# The verl engine's limits, checked when params are loaded (omni_r1.verl reads them too).
# verl's GRPO advantage divides by std_G + 1e-6 and has no key for it (core_algos).
VERL_GRPO_EPSILON = 1e-6


def check_verl_settings(cfg: Config) -> None:
    """Refuse settings the verl engine (omni_r1.verl) cannot honour; each message names its key.

    Response budgets are checked for every engine (:func:`budget_problems`).

    Raises:
        ValueError: a dual clip or advantage epsilon verl has no key for, a fidelity reward term
            (local engine only), or a PPO mini-batch that does not split over the GPUs.
    """
    if cfg.grpo.clip_ratio_c is None:
        raise ValueError("grpo.clip_ratio_c: null (no dual clip) has no verl equivalent; set a bound > 1")
    if not math.isclose(cfg.grpo.epsilon, VERL_GRPO_EPSILON):
        raise ValueError(
            f"grpo.epsilon: verl's GRPO advantage adds {VERL_GRPO_EPSILON} to std_G, got {cfg.grpo.epsilon}"
        )
    if cfg.reward.fidelity_weight > 0:
        raise ValueError(
            "reward.fidelity_weight > 0 is computed by the local engine's rollout scorer only; "
            "set it to 0 with perpo.engine: verl"
        )
    world = cfg.perpo.verl.nnodes * cfg.perpo.verl.n_gpus_per_node
    if (cfg.perpo.ppo_mini_batch_size * cfg.perpo.rollout_n) % world:
        raise ValueError(
            f"perpo.ppo_mini_batch_size: {cfg.perpo.ppo_mini_batch_size} x rollout_n "
            f"{cfg.perpo.rollout_n} responses do not split over {world} GPUs "
            "(perpo.verl.nnodes x perpo.verl.n_gpus_per_node)"
        )


class ConfigError(ValueError):
    """A params file that does not validate; the message names file and key path."""


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overlay`` merged in, recursing into nested mappings."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: file not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid key(s)"]
    for item in err.errors():
        path = ".".join(str(part) for part in item["loc"])
        if not path:  # a check across sections: its message names the keys
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {path}: missing key")
        else:
            lines.append(f"  {path}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def validate(data: Mapping[str, Any], source: str = "params") -> Config:
    """Validate keys and types, then the budgets that must agree across sections."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from err
    problems = budget_problems(cfg)
    if problems:
        lines = [f"{source}: {len(problems)} inconsistent budget(s)"] + [f"  {p}" for p in problems]
        raise ConfigError("\n".join(lines))
    return cfg


def image_grid(model: ModelConfig) -> int | None:
    """Codes per image side: the VQ resolution over its downsampling (2 per level after the first).

    The tiny model's shape comes from ``model.tiny``; a pretrained one's from
    ``model.pretrained_config.vq_config``; None when that is not in the config.
    """
    if model.source == "tiny":
        return model.tiny.image_size // 2 ** (len(model.tiny.vq_channel_multiplier) - 1)
    vq = model.pretrained_config.get("vq_config")
    if not vq:
        return None
    return int(vq["resolution"]) // 2 ** (len(vq["channel_multiplier"]) - 1)


def budget_problems(cfg: Config) -> list[str]:
    """Token budgets that cannot hold the images they must hold, each naming its keys.

    One image costs H·W codes + BOI + EOI. A budget that generates images (generation, PeRPO
    responses, interleaved evaluation) must fit one; the packing length must fit the input
    image plus ``generation.max_images_per_answer`` step images, the most a kept sample holds.
    """
    grid = image_grid(cfg.model)
    if grid is None:
        return []
    image = grid * grid + 2
    where = (
        f"one image = {grid}x{grid} codes + BOI + EOI = {image} tokens "
        f"(model.source={cfg.model.source})"
    )
    problems = []
    generation = cfg.generation
    if generation.max_images_per_answer > 0 and generation.max_new_tokens < image:
        problems.append(f"generation.max_new_tokens={generation.max_new_tokens} < {where}")
    if cfg.perpo.max_new_tokens < image:
        problems.append(f"perpo.max_new_tokens={cfg.perpo.max_new_tokens} < {where}")
    if cfg.eval.decoding == "interleaved" and cfg.eval.max_new_tokens < image:
        problems.append(
            f"eval.max_new_tokens={cfg.eval.max_new_tokens} < {where}; "
            "eval.decoding=interleaved must be able to emit an image"
        )
    kept = (1 + generation.max_images_per_answer) * image
    if cfg.packing.max_length < kept:
        problems.append(
            f"packing.max_length={cfg.packing.max_length} < {kept} tokens: the input image and "
            f"generation.max_images_per_answer={generation.max_images_per_answer} step images, "
            f"{where}"
        )
    return problems


def load_config(
    params: Path | str = DEFAULT_PARAMS, overlays: tuple[Path | str, ...] = ()
) -> Config:
    """Read params.yaml, merge overlays in order, and validate the result."""
    paths = [Path(params), *(Path(p) for p in overlays)]
    data: dict[str, Any] = {}
    for path in paths:
        data = deep_merge(data, read_yaml(path))
    return validate(data, source=" + ".join(str(p) for p in paths))


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``("a.b.c", value)`` for every leaf of a nested mapping."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, prefix=f"{path}.")
        else:
            yield path, value


def dvc_set_params(overlay: Path | str) -> list[str]:
    """The ``-S key=value`` arguments that apply an overlay as a DVC experiment."""
    overlay_data = read_yaml(Path(overlay))
    args: list[str] = []
    for key, value in flatten(overlay_data):
        args += ["-S", f"{key}={json.dumps(value)}"]
    return args
