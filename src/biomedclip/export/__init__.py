"""Exports: the model out to Hugging Face transformers, open_clip and ONNX, each proven equal.

``biomedclip convert`` is the way in (any checkpoint -> verified safetensors); ``export`` is the way
out::

    import biomedclip
    biomedclip.export("hf", "hf-hub:microsoft/BiomedCLIP-...", "biomedclip-hf")
    biomedclip.export("open_clip", "./my-model", "oc", open_clip_spelling="old")
    biomedclip.export("onnx", model, "biomedclip-onnx", onnx_variants=("fp32", "int8"))

Every export is built in a temporary folder, loaded back through its own library, compared with
the model on probe inputs, and only then renamed to ``out`` with ``export_manifest.json`` (the
source's sha256, every file's sha256, the parity measured, library versions).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError, InputError
from biomedclip.export.manifest import MANIFEST_FILE, staged_directory, write_manifest

FORMATS = ("hf", "open_clip", "onnx", "openvino")
__all__ = ["FORMATS", "MANIFEST_FILE", "ExportResult", "export"]


@dataclass
class ExportResult:
    format: str
    directory: Path
    manifest: dict[str, Any]


def _exporter(fmt: str):
    if fmt == "hf":
        from biomedclip.export.to_hf import export_hf

        return export_hf
    if fmt == "open_clip":
        from biomedclip.export.to_open_clip import export_open_clip

        return export_open_clip
    if fmt == "onnx":
        from biomedclip.export.to_onnx import export_onnx

        return export_onnx
    if fmt == "openvino":
        from biomedclip.export.to_openvino import export_openvino

        return export_openvino
    raise ConfigError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")


def _check_options(fmt: str, model, options: dict[str, Any]) -> None:
    """Refuse bad options and unrepresentable models before any work is done."""
    if fmt == "onnx":
        from biomedclip.export.to_onnx import check_variants

        check_variants(options["onnx_variants"])
    elif fmt == "openvino":
        from biomedclip.embedding.openvino_backend import require_nncf, require_openvino
        from biomedclip.export.to_openvino import check_variants as check_ov

        check_ov(options["openvino_variants"])
        require_openvino()
        if "int8" in options["openvino_variants"]:
            require_nncf()
    elif fmt == "open_clip":
        from biomedclip.checkpoint.save import open_clip_config
        from biomedclip.export.to_open_clip import check_representable

        check_representable(model)
        open_clip_config(model.config, options["open_clip_spelling"])


def _check_parity(fmt: str, parity: dict[str, Any], out: Path) -> None:
    from biomedclip.export.parity import check

    if fmt == "open_clip":
        if parity["open_clip"].get("checked"):
            check(parity["open_clip"], f"{out} (open_clip)")
        return
    for variant, p in parity.items():
        check(p, f"{out} ({fmt} {variant})", int8=variant == "int8", bf16=variant == "bf16")


def export(
    fmt: str,
    source: Any,
    out: str | os.PathLike,
    *,
    tokenizer: Any = None,
    overwrite: bool = False,
    probe_images: Sequence[Any] | None = None,
    probe_texts: Sequence[str] | None = None,
    open_clip_spelling: str = "new",
    onnx_variants: Sequence[str] = ("fp32", "int8"),
    openvino_variants: Sequence[str] = ("fp32", "int8", "bf16"),
    calibration: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``source`` (a hub id, directory, weights file or loaded model) as ``fmt`` to ``out``.

    ``probe_images``/``probe_texts``: inputs for the parity check (default: built-in ones).
    ``open_clip_spelling``: ``new`` (open_clip >= 2.23) or ``old`` (older releases).
    ``onnx_variants``: ``fp32`` (exact) and/or ``int8`` (dynamic quantisation).
    ``openvino_variants``: ``fp32``, ``int8`` (NNCF, calibrated on ``calibration``, a folder of
    real images, else on ``probe_images``) and ``bf16`` (a run-time hint on the fp32 IR).
    """
    from biomedclip.export.parity import reference

    run = _exporter(fmt)
    if isinstance(source, (str, os.PathLike)):
        from biomedclip.factory import load

        model, _, loaded_tok = load(source, cache_dir=cache_dir)
        tokenizer = tokenizer or loaded_tok
    else:
        model = source
        tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError("no tokenizer: pass tokenizer= or load the model with biomedclip.load")
    model = model.eval()
    options = {
        "hf": {},
        "open_clip": {"open_clip_spelling": open_clip_spelling},
        "onnx": {"onnx_variants": list(onnx_variants)},
        "openvino": {"openvino_variants": list(openvino_variants)},
    }[fmt]
    _check_options(fmt, model, options)
    probe = reference(model, probe_images, probe_texts)
    if fmt == "openvino":  # calibration is not a manifest option: recorded with the parity
        options = {**options, "calibration": str(calibration) if calibration else None}
        if calibration is None and probe_images:  # taken out by the exporter before the manifest
            options["calibration_images"] = probe.images
    with staged_directory(out, overwrite) as stage:
        parity = run(model, tokenizer, stage, probe, options)
        _check_parity(fmt, parity, Path(out))
        manifest = write_manifest(stage, fmt, model, parity, options)
    return ExportResult(fmt, Path(out), manifest)


class _CallableModule(types.ModuleType):
    """``biomedclip.export(...)`` works whether the name is bound to this module (once a
    ``biomedclip.export.*`` submodule is imported) or to :func:`export` (the lazy attribute)."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExportResult:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
