"""Typed VQA configuration (YAML / TOML + ``--set key=value``), read with the trainer's machinery.

Sections: ``model`` (backbone, fusion size, which encoder parts train), ``data`` (dataset, splits,
vocabulary), ``optim`` (AdamW, per-group learning-rate multipliers, schedule), ``train`` and
``output``. The defaults are the M3AE fine-tuning recipe on BiomedCLIP towers: 6 co-attention
layers of width 768 / 12 heads, AdamW lr 5e-6 (betas 0.9/0.98, weight decay 0.01), head x50 and
fusion x5, linear decay after a 10 % warm-up, batch 64, binary cross-entropy over answers.
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
from biomedclip.vqa.data import DATASETS

TUNE_MODES = ("frozen", "partial", "full")


@dataclass
class FusionConfig:
    """The METER / M3AE co-attention fusion and answer head."""

    layers: int = 6
    hidden: int = 768
    heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    max_question_tokens: int = 32


@dataclass
class VQAModelSection:
    source: str | None = None  # BiomedCLIP hub id / directory / file; None: random towers
    preset: str = "biomedclip"  # architecture of random towers: "biomedclip" or "tiny"
    tokenizer: str | None = None  # tokenizer directory (default: the source's)
    image: str = "frozen"  # frozen | partial (last image_unfrozen_blocks train) | full
    image_unfrozen_blocks: int = 2
    text: str = "full"
    text_unfrozen_blocks: int = 2
    cache_image_features: bool = True  # with a frozen image tower: encode every image once
    grad_checkpointing: bool = False
    fusion: FusionConfig = field(default_factory=FusionConfig)


@dataclass
class VQADataSection:
    dataset: str = "vqa_rad"  # vqa_rad | vqa_rad_hf | slake | pathvqa | files
    root: str | None = None  # dataset folder (files: base of relative image paths)
    train: str | None = None  # question files (dataset "files")
    val: str | None = None
    test: str | None = None
    vocabulary: str = "train"  # "train" answers only, or "closed-world" (train+val+test)
    min_answer_count: int = 1
    limit_train: int | None = None  # first N training questions (tests, quick runs)
    workers: int = 0
    skip_unreadable: bool = False  # train without the questions of unreadable images (else: error)


@dataclass
class VQAOptimSection:
    lr: float = 5e-6
    head_lr_multiplier: float = 50.0
    fusion_lr_multiplier: float = 5.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    schedule: str = "linear"  # linear | cosine | constant, after warm-up
    warmup_fraction: float = 0.1
    grad_clip_norm: float | None = None
    loss: str = "bce"  # "bce" (M3AE: BCE over answers x number of answers) or "ce"


@dataclass
class VQATrainSection:
    global_batch_size: int = 64
    epochs: float | None = 50
    steps: int | None = None  # overrides epochs
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (CUDA)
    device: str = "auto"
    seed: int = 0
    eval_batch_size: int = 64


@dataclass
class VQAOutputSection(RunOutputSection):
    """Checkpoints and logs (``eval_every`` 0: evaluate the test split only at the end)."""

    dir: str = "runs/vqa"
    save_every: int = 200
    keep_last: int = 2
    feature_cache: str | None = None  # default: <dir>/feature_cache


@dataclass
class VQAConfig(RunConfig):
    """``biomedclip vqa train``'s config."""

    model: VQAModelSection = field(default_factory=VQAModelSection)
    data: VQADataSection = field(default_factory=VQADataSection)
    optim: VQAOptimSection = field(default_factory=VQAOptimSection)
    train: VQATrainSection = field(default_factory=VQATrainSection)
    output: VQAOutputSection = field(default_factory=VQAOutputSection)


def validate(cfg: VQAConfig) -> None:
    check_run_config(
        cfg,
        {
            "model.image": TUNE_MODES,
            "model.text": TUNE_MODES,
            "model.preset": ("biomedclip", "tiny"),
            "data.dataset": DATASETS,
            "data.vocabulary": ("train", "closed-world"),
            "optim.loss": ("bce", "ce"),
        },
    )
    f = cfg.model.fusion
    if f.layers < 1 or f.hidden % f.heads:
        raise ConfigError("model.fusion: layers >= 1 and hidden divisible by heads are needed")
    if cfg.train.global_batch_size < 1:
        raise ConfigError("train.global_batch_size must be >= 1")
    if not cfg.train.steps and not cfg.train.epochs:
        raise ConfigError("set train.steps or train.epochs")


def config_from_dict(data: dict[str, Any]) -> VQAConfig:
    return typed_config_from_dict(VQAConfig, data, validate)


def load_vqa_config(path: str | Path | None, overrides: list[str] | None = None) -> VQAConfig:
    """The VQA config in ``path`` (YAML/TOML; None: defaults) with ``key=value`` overrides."""
    return load_typed_config(VQAConfig, path, overrides, validate)
