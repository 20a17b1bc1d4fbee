"""Parity of an export with the project's model, measured at export time and kept in its manifest.

The reference embeddings come from the encoding engine (:class:`biomedclip.embedding.Encoder`,
fp32); the export's come from its own loader, preprocessing and tokenizer, so the figures cover the
whole path a user of the export takes. Probe inputs are the user's images and texts, or built-in
ones (seeded synthetic images of several sizes and modes, and biomedical prompts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.errors import CheckpointError

PROBE_TEXTS = (
    "chest X-ray",
    "this is a photo of adenocarcinoma histopathology",
    "Axial CT of the abdomen shows a hypodense hepatic lesion with peripheral enhancement.",
    "brain MRI",
    "hematoxylin and eosin stained section of squamous cell carcinoma",
    "Is there evidence of a pleural effusion on the left side?",
    "bone X-ray",
    "immunohistochemistry of Ki-67 in a lymph node",
)
FP32_TOLERANCE = 1e-4  # max |difference| of unit embeddings that an fp32 export may show
INT8_MIN_COSINE = 0.99  # below this an int8 export is refused
BF16_MIN_COSINE = 0.999  # OpenVINO's bf16 hint (exact f32 on CPUs without native bf16)


def probe_images(seed: int = 0) -> list[Image.Image]:
    """Four seeded synthetic images: RGB noise, a grey gradient, RGBA, and a palette image."""
    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 256, (250, 330, 3), dtype=np.uint8), "RGB")
    ramp = np.linspace(0, 255, 301, dtype=np.float32)[None, :] * np.ones((240, 1), np.float32)
    grey = Image.fromarray(ramp.astype(np.uint8), "L")
    rgba = Image.fromarray(rng.integers(0, 256, (224, 224, 4), dtype=np.uint8), "RGBA")
    palette = noise.resize((180, 260)).convert("P", palette=Image.Palette.ADAPTIVE)
    return [noise, grey, rgba, palette]


@dataclass
class Probe:
    """Probe inputs and the reference's unit embeddings of them."""

    images: list[Image.Image]
    texts: list[str]
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray


def reference(model, images: Sequence[Any] | None, texts: Sequence[str] | None) -> Probe:
    """The engine's fp32 embeddings of the probe inputs (built-in ones when ``None``)."""
    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.imaging import load_image

    images = list(images) if images else probe_images()
    images = [im if isinstance(im, Image.Image) else load_image(im, mode=None) for im in images]
    texts = list(texts) if texts else list(PROBE_TEXTS)
    enc = Encoder(model, settings=EncoderSettings(num_workers=0))
    img, txt = enc.encode_images(images), enc.encode_texts(texts)
    for r in (img, txt):
        if r.failures:
            f = r.failures[0]
            raise CheckpointError(f"parity probe {f.path or f.id}: {f.error}")
    return Probe(images, texts, img.per_input()[0], txt.per_input()[0])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """``max_abs_diff`` of the unit embeddings and their ``min_cosine``."""
    a, b = _unit(ours), _unit(theirs)
    if a.shape != b.shape:
        raise CheckpointError(f"export gives {b.shape} embeddings, the model {a.shape}")
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "min_cosine": float((a * b).sum(-1).min()),
    }


def measure(
    probe: Probe,
    encode_images: Callable[[list[Any]], np.ndarray],
    encode_texts: Callable[[list[str]], np.ndarray],
) -> dict[str, Any]:
    """Parity of one exported variant: ``{"image": {...}, "text": {...}, "images": n, ...}``."""
    return {
        "images": len(probe.images),
        "texts": len(probe.texts),
        "image": compare(probe.image_embeddings, encode_images(probe.images)),
        "text": compare(probe.text_embeddings, encode_texts(probe.texts)),
    }


def check(parity: dict[str, Any], where: str, int8: bool = False, bf16: bool = False) -> None:
    """Refuse an export whose measured parity is out of bounds (fp32: exact; int8: close;
    bf16: cosine >= 0.999)."""
    for tower in ("image", "text"):
        p = parity[tower]
        if bf16:
            if p["min_cosine"] < BF16_MIN_COSINE:
                raise CheckpointError(
                    f"{where}: bf16 {tower} embeddings have cosine {p['min_cosine']:.5f} to fp32 "
                    f"(< {BF16_MIN_COSINE})"
                )
            continue
        if int8 and p["min_cosine"] < INT8_MIN_COSINE:
            raise CheckpointError(
                f"{where}: int8 {tower} embeddings have cosine {p['min_cosine']:.5f} to fp32 "
                f"(< {INT8_MIN_COSINE})"
            )
        if not int8 and p["max_abs_diff"] > FP32_TOLERANCE:
            raise CheckpointError(
                f"{where}: {tower} embeddings differ from the model's by "
                f"{p['max_abs_diff']:.2e} (> {FP32_TOLERANCE})"
            )
