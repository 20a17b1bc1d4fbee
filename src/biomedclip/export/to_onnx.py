"""``export onnx``: both towers as ONNX graphs (fp32 and/or int8) for the torch-free runner.

Files: ``image.onnx`` / ``text.onnx`` (fp32), ``image.int8.onnx`` / ``text.int8.onnx`` (dynamic int8),
``biomedclip_onnx.json`` (preprocessing, context length, logit scale, variants) and the tokenizer
files. Run them with :class:`biomedclip.onnx.OnnxBiomedCLIP`; parity is measured through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError
from biomedclip.export.parity import Probe, measure
from biomedclip.io_utils import atomic_write_json
from biomedclip.model.onnx_graphs import (
    export_image_tower,
    export_text_tower,
    quantize_int8,
    tower_depth,
)
from biomedclip.onnx.runner import CONFIG_FILE, VARIANTS, OnnxBiomedCLIP, OnnxConfig


def onnx_config(model, variants: list[str]) -> OnnxConfig:
    c = model.config
    return OnnxConfig(
        image_size=c.preprocess.image_size,
        mean=list(c.preprocess.mean),
        std=list(c.preprocess.std),
        interpolation=c.preprocess.interpolation,
        context_length=c.text.context_length,
        embed_dim=c.embed_dim,
        logit_scale=float(model.logit_scale.detach().float().exp()),
        variants=variants,
    )


def check_variants(variants: list[str]) -> None:
    if not variants or any(v not in VARIANTS for v in variants):
        raise ConfigError(f"ONNX variants {variants}: choose from {list(VARIANTS)}")


def write_onnx(model, tokenizer, directory: Path, variants: list[str]) -> None:
    """Export the towers (fp32, then int8 from them) and the runner's config and tokenizer."""
    check_variants(variants)
    image_fp32, text_fp32 = (directory / name for name in VARIANTS["fp32"])
    export_image_tower(model, image_fp32)
    export_text_tower(model, text_fp32)
    if "int8" in variants:
        for tower, src, dst in zip(("image", "text"), (image_fp32, text_fp32), VARIANTS["int8"]):
            quantize_int8(src, directory / dst, tower, tower_depth(model, tower))
    if "fp32" not in variants:
        image_fp32.unlink()
        text_fp32.unlink()
    tokenizer.save_pretrained(directory)
    atomic_write_json(directory / CONFIG_FILE, onnx_config(model, variants).to_json())


def export_onnx(model, tokenizer, directory: Path, probe: Probe, options: dict) -> dict[str, Any]:
    """Write the graphs and measure each variant's parity through the torch-free runner."""
    variants = list(options["onnx_variants"])
    write_onnx(model, tokenizer, directory, variants)
    parity = {}
    for variant in variants:
        runner = OnnxBiomedCLIP(directory, variant)
        parity[variant] = measure(
            probe,
            lambda items, r=runner: r.encode_images(items).embeddings,
            lambda items, r=runner: r.encode_texts(items).embeddings,
        )
    return parity
