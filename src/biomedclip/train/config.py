"""Typed training configuration, read from YAML or TOML, with ``--set key=value`` overrides
(through :func:`biomedclip.train.config_files.load_typed_config`, shared with ``vqa train``).

Sections: ``model`` (initialisation, tokenizer, lock/LoRA, memory options), ``data``, ``optim``
(AdamW + schedule), ``train`` (batch, steps, precision, loss), ``output`` (checkpoints, logs, eval).
``train.global_batch_size`` is the contrastive batch over all processes; each process sees
``global_batch_size / world_size`` pairs per step, in micro-batches of ``train.micro_batch_size``
(GradCache accumulation) when that is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError
from biomedclip.train.config_files import (
    RunConfig,
    RunOutputSection,
    check_run_config,
    load_typed_config,
    typed_config_from_dict,
)


@dataclass
class LoraConfig:
    """LoRA adapters (through peft) on the attention and MLP linears of the chosen towers."""

    enabled: bool = False
    towers: list[str] = field(default_factory=lambda: ["image", "text"])
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # None: qkv/proj/fc1/fc2 in the ViT, query/key/value/dense in BERT
    vision_targets: list[str] | None = None
    text_targets: list[str] | None = None


@dataclass
class ModelSection:
    """How the model is built and which parameters train."""

    # "pretrained": a BiomedCLIP checkpoint via biomedclip.load(source) (fine-tuning);
    # "towers": random model with vision_weights / text_weights loaded into the towers;
    # "scratch": random init.
    init: str = "scratch"
    source: str | None = None
    preset: str = "biomedclip"  # "biomedclip" or "tiny" (for scratch / towers)
    config_file: str | None = None  # a ModelConfig / open_clip_config.json instead of the preset
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted ModelConfig keys
    vision_weights: str | None = None  # timm ViT: a file, a directory, or "hf-hub:timm/..."
    text_weights: str | None = None  # BERT: a directory or a hub id
    tokenizer: str | None = None  # a directory, a hub id, or "shapes"; default: the model's
    grad_checkpointing: bool = False
    compile: bool = False
    patch_dropout: float | None = None  # overrides config.vision.patch_dropout when set
    lock_image: bool = False
    lock_image_unlocked_blocks: int = 0
    lock_text: bool = False
    lock_text_unlocked_blocks: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ShapesData:
    """The built-in procedurally drawn captioned dataset (coloured shapes), written on first use."""

    n_train: int = 0  # 0: not used
    n_val: int = 500
    image_size: int = 32
    samples_per_shard: int = 1000
    seed: int = 0


@dataclass
class DataSection:
    """Training data: WebDataset shards or a CSV / Parquet table of image paths and captions."""

    train: str | list[str] | None = (
        None  # shards (dir, glob, {a..b} braces, list) or a .csv/.parquet
    )
    val: str | list[str] | None = None  # held-out shard(s) or table for validation
    format: str = "auto"  # "auto", "wds", "csv", "parquet"
    image_column: str = "filepath"
    caption_column: str = "caption"
    root: str | None = None  # base directory of relative image paths in a table
    resampled: bool = False  # shards drawn with replacement (an endless stream) instead of epochs
    shuffle_buffer: int = 1000
    workers: int = 2
    max_val_samples: int = 5000
    shapes: ShapesData = field(default_factory=ShapesData)


@dataclass
class OptimSection:
    """AdamW and the learning-rate schedule (the paper's recipe by default)."""

    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    schedule: str = "cosine"  # "cosine", "linear", "constant" (all after linear warmup)
    warmup_steps: int = 2000
    min_lr: float = 0.0
    grad_clip_norm: float | None = None


@dataclass
class TrainSection:
    global_batch_size: int = 4096
    micro_batch_size: int | None = None  # per process; GradCache accumulation when < local batch
    steps: int | None = None  # total optimizer steps (or derived from epochs)
    epochs: float | None = None  # with samples_per_epoch: steps = epochs * samples / batch
    samples_per_epoch: int | None = None
    precision: str = "bf16"  # "fp32", "bf16", "fp16" (fp16: CUDA only, with a GradScaler)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda"
    local_loss: bool = False
    gather_with_grad: bool = True
    max_logit_scale: float = 100.0
    seed: int = 0
    deterministic: bool = False


@dataclass
class OutputSection(RunOutputSection):
    """Checkpoints, logs and evaluation (``eval_every`` 0: only at the end, when data.val is set)."""

    zeroshot_labels: list[str] | None = None  # optional zero-shot check on the val set's labels


@dataclass
class TrainConfig(RunConfig):
    """``biomedclip train``'s config."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)


def validate(cfg: TrainConfig) -> None:
    check_run_config(
        cfg,
        {
            "model.init": ("pretrained", "towers", "scratch"),
            "model.preset": ("biomedclip", "tiny"),
            "data.format": ("auto", "wds", "csv", "parquet"),
        },
    )
    if cfg.model.init == "pretrained" and not cfg.model.source:
        raise ConfigError("model.init = 'pretrained' needs model.source (a hub id, dir or file)")
    if cfg.train.global_batch_size < 2:
        raise ConfigError("train.global_batch_size must be >= 2 (a contrastive batch)")
    if cfg.train.micro_batch_size is not None and cfg.train.micro_batch_size < 1:
        raise ConfigError("train.micro_batch_size must be >= 1")
    if not (cfg.train.max_logit_scale > 0):
        raise ConfigError("train.max_logit_scale must be > 0")
    for tower in cfg.model.lora.towers:
        if tower not in ("image", "text"):
            raise ConfigError(f"model.lora.towers: {tower!r} is not 'image' or 'text'")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return typed_config_from_dict(TrainConfig, data, validate)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """The config in ``path`` (YAML/TOML; None: defaults) with ``key=value`` overrides applied."""
    return load_typed_config(TrainConfig, path, overrides, validate)
