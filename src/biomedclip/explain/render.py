"""Drawing heatmaps: a patch grid scaled to [0, 1], coloured, blended over the model's view."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_write_bytes


def normalise(grid: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] (a flat map becomes all zeros)."""
    g = np.asarray(grid, dtype=np.float32)
    lo, hi = float(g.min()), float(g.max())
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def colourise(grid: np.ndarray, size: tuple[int, int], cmap: str = "jet") -> Image.Image:
    """The normalised grid upsampled (bicubic) to ``size`` and coloured with a matplotlib map."""
    try:
        from matplotlib import colormaps
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError("heatmap colours need matplotlib: pip install matplotlib") from e

    g = Image.fromarray(normalise(grid), mode="F").resize(size, Image.Resampling.BICUBIC)
    values = np.clip(np.asarray(g), 0.0, 1.0)
    rgb = (colormaps[cmap](values)[..., :3] * 255).round().astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def overlay(view: Image.Image, grid: np.ndarray, alpha: float = 0.45, cmap: str = "jet"):
    """The heatmap blended over ``view`` (the model's square crop, see ``model_view``)."""
    base = view.convert("RGB")
    return Image.blend(base, colourise(grid, base.size, cmap), alpha)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, png_bytes(image))
    return path
