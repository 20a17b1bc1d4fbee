"""Tissue detection on a slide thumbnail: saturation with an Otsu threshold, clamped."""

from __future__ import annotations

import numpy as np

# Background (glass) in brightfield slides is nearly grey; stained tissue is saturated. Otsu picks
# the split on saturation, clamped so that an all-tissue or all-glass thumbnail still works.
MIN_SATURATION = 0.04
MAX_SATURATION = 0.08


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (maximises the between-class variance)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() == v.max():
        return float(v.min()) if v.size else 0.0
    hist, edges = np.histogram(v, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of tissue pixels in an ``[H, W, 3]`` uint8 RGB thumbnail."""
    x = rgb[..., :3].astype(np.float32)
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    t = min(max(otsu_threshold(sat), MIN_SATURATION), MAX_SATURATION)
    return (sat > t) & (mx > 20)  # very dark pixels are scanner borders or pen, not tissue
