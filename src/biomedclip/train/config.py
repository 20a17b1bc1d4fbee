"""Typed training configuration, read from YAML or TOML, with ``--set key=value`` overrides.

Sections: ``model`` (initialisation, tokenizer, lock/LoRA, memory options), ``data``, ``optim``
(AdamW + schedule), ``train`` (batch, steps, precision, loss), ``output`` (checkpoints, logs, eval).
``train.global_batch_size`` is the contrastive batch over all processes; each process sees
``global_batch_size / world_size`` pairs per step, in micro-batches of ``train.micro_batch_size``
(GradCache accumulation) when that is set.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from biomedclip.errors import ConfigError


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
class OutputSection:
    dir: str = "runs/biomedclip"
    save_every: int = 1000
    keep_last: int = 3
    resume: str = "auto"  # "auto" (latest checkpoint in dir), "none", or a checkpoint directory
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end (when data.val is set)
    tensorboard: bool = True
    zeroshot_labels: list[str] | None = None  # optional zero-shot check on the val set's labels


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- construction from dicts ---------------------------------------------------------------


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check / coerce ``value`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            return tuple(
                _convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
            )
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} "
            f"(known in {where or 'top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    cfg = _build(TrainConfig, data)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    choices = {
        "model.init": (cfg.model.init, ("pretrained", "towers", "scratch")),
        "model.preset": (cfg.model.preset, ("biomedclip", "tiny")),
        "data.format": (cfg.data.format, ("auto", "wds", "csv", "parquet")),
        "optim.schedule": (cfg.optim.schedule, ("cosine", "linear", "constant")),
        "train.precision": (cfg.train.precision, ("fp32", "bf16", "fp16")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    if cfg.model.init == "pretrained" and not cfg.model.source:
        raise ConfigError("model.init = 'pretrained' needs model.source (a hub id, dir or file)")
    if cfg.train.global_batch_size < 2:
        raise ConfigError("train.global_batch_size must be >= 2 (a contrastive batch)")
    if cfg.train.micro_batch_size is not None and cfg.train.micro_batch_size < 1:
        raise ConfigError("train.micro_batch_size must be >= 1")
    if not (cfg.train.max_logit_scale > 0):
        raise ConfigError("train.max_logit_scale must be > 0")
    if cfg.output.keep_last < 1:
        raise ConfigError("output.keep_last must be >= 1")
    for tower in cfg.model.lora.towers:
        if tower not in ("image", "text"):
            raise ConfigError(f"model.lora.towers: {tower!r} is not 'image' or 'text'")


# ---- files and overrides -------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``) or TOML (``.toml``) file as a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from e
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: invalid {path.suffix.lstrip('.') or 'YAML'} ({e})") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-4"`` -> ``(["optim", "lr"], 0.0001)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value (e.g. optim.lr=1e-4)")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    return parts, value


def _looks_like_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return any(c.isdigit() for c in s) and s.strip().lower() not in ("nan", "inf", "-inf")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # deep copy
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _fix_floats(data: Any) -> Any:
    """YAML 1.1 reads ``5e-4`` (no dot) as a string: turn such strings into floats."""
    if isinstance(data, dict):
        return {k: _fix_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_fix_floats(v) for v in data]
    if isinstance(data, str) and _looks_like_float(data) and ("e" in data.lower()):
        return float(data)
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """The config in ``path`` (YAML/TOML; None: defaults) with ``key=value`` overrides applied."""
    data = read_config_file(path) if path is not None else {}
    data = apply_overrides(_fix_floats(data), overrides or [])
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from e
