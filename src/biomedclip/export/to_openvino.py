"""``export openvino``: both towers as OpenVINO IR (fp32, NNCF int8, bf16 as a run-time hint).

Files: ``image.xml`` / ``text.xml`` (+ ``.bin``; fp32, dynamic batch, the text also a dynamic
length), ``image.int8.xml`` / ``text.int8.xml`` (NNCF post-training int8 with the engine's recipe,
7-bit weights so the IR is exact to run on CPUs with or without VNNI), ``biomedclip_onnx.json``
(the runner's config: preprocessing, context length, logit scale, variants) and the tokenizer files.
bf16 is not a file: the runner's ``openvino-bf16`` variant compiles the fp32 IR with OpenVINO's
bf16 hint. int8 is calibrated on ``calibration`` (a folder of real images), else on the given
probe images; the built-in synthetic probes are never used to calibrate. Parity is measured
through the torch-free runner (:class:`biomedclip.onnx.OnnxBiomedCLIP`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError
from biomedclip.export.parity import Probe, measure
from biomedclip.io_utils import atomic_write_json
from biomedclip.onnx.runner import CONFIG_FILE, VARIANTS, OnnxBiomedCLIP

OV_VARIANTS = ("fp32", "int8", "bf16")


def check_variants(variants: list[str]) -> None:
    if not variants or any(v not in OV_VARIANTS for v in variants):
        raise ConfigError(f"OpenVINO variants {variants}: choose from {list(OV_VARIANTS)}")


def _calibration_samples(model, options: dict) -> tuple[list, list, str]:
    """Image and text samples for NNCF, and where they came from."""
    from biomedclip.embedding.calibration import (
        CalibrationSet,
        calibration_pixels,
        calibration_tokens,
        default_prompts,
        resolve_calibration,
    )
    from biomedclip.transforms import eval_transform

    spec = options.pop("calibration_images", None) or options.get("calibration")
    preprocess = getattr(model, "preprocess", None) or eval_transform(model.config.preprocess)
    if isinstance(spec, list):  # PIL probe images given by the user
        import torch

        pixels = torch.stack([preprocess(im) for im in spec])
        cal = CalibrationSet([], default_prompts(), f"{len(spec)} probe images")
    else:
        cal = resolve_calibration(spec)
        if not cal.has_images:
            raise ConfigError(
                "export openvino's int8 variant is calibrated on real images: pass --calibration "
                "DIR or --probe-images (or set BIOMEDCLIP_CALIBRATION), or --variants fp32"
            )
        pixels = calibration_pixels(cal, preprocess)
    images = [pixels[i : i + 1].numpy() for i in range(len(pixels))]
    texts = [(i.numpy(), m.numpy()) for i, m in calibration_tokens(cal, model.tokenizer)]
    return images, texts, cal.description


def write_openvino(model, tokenizer, directory: Path, variants: list[str], options: dict) -> dict:
    """Convert (and quantise) the towers into ``directory``; returns what the manifest records."""
    from biomedclip.embedding.openvino_backend import convert, quantize, save_ir
    from biomedclip.export.to_onnx import onnx_config
    from biomedclip.model.onnx_graphs import tower_depth

    check_variants(variants)
    model.tokenizer = getattr(model, "tokenizer", None) or tokenizer
    info: dict[str, Any] = {}
    samples = _calibration_samples(model, options) if "int8" in variants else None
    for i, tower in enumerate(("image", "text")):
        ovm = convert(model, tower)
        save_ir(ovm, directory / VARIANTS["openvino-fp32"][i])
        if samples is not None:
            q = quantize(ovm, tower, tower_depth(model, tower), samples[i], portable=True)
            save_ir(q, directory / VARIANTS["openvino-int8"][i])
    if samples is not None:
        info["calibration"] = options["calibration"] = samples[2]  # recorded in the manifest
    tokenizer.save_pretrained(directory)
    names = [f"openvino-{v}" for v in variants]
    atomic_write_json(directory / CONFIG_FILE, onnx_config(model, names).to_json())
    return info


def export_openvino(model, tokenizer, directory: Path, probe: Probe, options: dict) -> dict:
    """Write the IR and measure each variant's parity through the torch-free runner."""
    variants = list(options["openvino_variants"])
    write_openvino(model, tokenizer, directory, variants, options)
    parity = {}
    for variant in variants:
        runner = OnnxBiomedCLIP(directory, f"openvino-{variant}")
        parity[variant] = measure(
            probe,
            lambda items, r=runner: r.encode_images(items).embeddings,
            lambda items, r=runner: r.encode_texts(items).embeddings,
        )
    return parity
