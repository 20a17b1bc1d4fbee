"""Typed dataclass configs from YAML / TOML files with ``--set key=value`` overrides.

One entry point, :func:`load_typed_config`, serves every training loop (contrastive ``train`` and
``vqa train``): it reads the file (``.yaml``/``.yml``/``.toml``; none: defaults), turns YAML 1.1's
``5e-4`` strings into floats, applies the overrides, builds the dataclass with every value checked
against its annotation (unknown keys are errors that list the known ones) and runs the config's own
``validate``. :func:`typed_config_from_dict` is the same from an already-read dict.

Top-level training configs derive from :class:`RunConfig` and their ``validate`` starts with
:func:`check_run_config`: the keys the run scaffold (:mod:`biomedclip.train.run`) reads itself.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from biomedclip.errors import ConfigError

C = TypeVar("C")

PRECISIONS = ("fp32", "bf16", "fp16")  # fp16: CUDA only, with a GradScaler
SCHEDULES = ("cosine", "linear", "constant")  # all after linear warm-up


@dataclass
class RunOutputSection:
    """The ``output`` keys the run scaffold reads; a loop's section adds its own, and may give
    these other defaults."""

    dir: str = "runs/biomedclip"
    save_every: int = 1000
    keep_last: int = 3
    resume: str = "auto"  # "auto" (latest checkpoint in dir), "none", or a checkpoint directory
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    tensorboard: bool = True


class RunConfig:
    """Base of the top-level training configs (dataclasses with sections ``model``, ``data``,
    ``optim``, ``train`` and ``output``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_choices(cfg: Any, allowed: dict[str, tuple[str, ...]]) -> None:
    """Each dotted key of ``cfg`` (e.g. ``"train.precision"``) has one of its allowed values."""
    for key, values in allowed.items():
        value = operator.attrgetter(key)(cfg)
        if value not in values:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(values)}")


def check_run_config(cfg: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """The loop's ``choices`` (see :func:`check_choices`) and the keys the run scaffold reads."""
    check_choices(cfg, {**choices, "optim.schedule": SCHEDULES, "train.precision": PRECISIONS})
    if cfg.output.keep_last < 1:
        raise ConfigError("output.keep_last must be >= 1")


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
        return build_dataclass(tp, value, where)
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


def build_dataclass(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """An instance of the dataclass ``cls`` from nested dicts, every value checked against its
    annotation; unknown keys are a :class:`ConfigError` naming the known ones."""
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


def fix_floats(data: Any) -> Any:
    """YAML 1.1 reads ``5e-4`` (no dot) as a string: turn such strings into floats."""
    if isinstance(data, dict):
        return {k: fix_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [fix_floats(v) for v in data]
    if isinstance(data, str) and _looks_like_float(data) and ("e" in data.lower()):
        return float(data)
    return data


def typed_config_from_dict(
    cls: type[C], data: dict[str, Any], validate: Callable[[C], None] | None = None
) -> C:
    """``cls`` built from ``data`` (nested sections) and checked by ``validate``."""
    cfg = build_dataclass(cls, data)
    if validate is not None:
        validate(cfg)
    return cfg


def load_typed_config(
    cls: type[C],
    path: str | Path | None,
    overrides: list[str] | None = None,
    validate: Callable[[C], None] | None = None,
) -> C:
    """The ``cls`` config in ``path`` (YAML/TOML; None: defaults) with ``key=value`` overrides
    applied, checked by ``validate``; errors name the file."""
    data = read_config_file(path) if path is not None else {}
    data = apply_overrides(fix_floats(data), overrides or [])
    try:
        return typed_config_from_dict(cls, data, validate)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from e
