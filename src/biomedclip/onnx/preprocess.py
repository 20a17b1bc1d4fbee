"""The eval transform in NumPy and Pillow: PIL image -> normalised ``float32 [3, S, S]``.

Same steps, in the same order, as :func:`biomedclip.transforms.eval_transform` (torchvision):
shortest side resized to ``S`` with Pillow's bicubic filter (the long side to
``int(S * long / short)``; nothing is done when the size is already right), centre crop with the
top-left corner at ``round((size - S) / 2)``, RGB conversion, ``/ 255`` and ``(x - mean) / std`` in
float32. The output is bit-identical to torchvision's. This file imports only NumPy and Pillow: the
Hugging Face export ships a copy of it beside its image processor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def resize_shortest(image: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    """Resize so that the shorter side is ``size`` (torchvision's ``Resize(int)`` on PIL)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), RESAMPLE[resample])


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` square (torchvision's ``CenterCrop`` on an image >= size)."""
    w, h = image.size
    if w < size or h < size:
        raise ValueError(f"image {w}x{h} is smaller than the crop {size}x{size}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def preprocess_image(
    image: Image.Image,
    size: int = 224,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    resample: str = "bicubic",
) -> np.ndarray:
    """One PIL image -> ``float32 [3, size, size]``, normalised."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    image = center_crop(resize_shortest(image, size, resample), size).convert("RGB")
    x = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(images: Sequence[Image.Image], **kwargs) -> np.ndarray:
    """Several PIL images -> ``float32 [B, 3, size, size]``."""
    return np.stack([preprocess_image(im, **kwargs) for im in images])
