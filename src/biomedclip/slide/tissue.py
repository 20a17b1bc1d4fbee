"""Tissue segmentation of a slide thumbnail for patching: the imaging mask (Otsu on saturation,
:func:`biomedclip.imaging.tissue.tissue_mask`) with pen marks rejected, specks dropped and small
holes filled.

Pen ink is told apart from H&E by colour on the thumbnail, where nuclei and stroma are already
averaged together:

- blue ink: hue 180-235 deg with saturation > 0.5. Hematoxylin-rich tumour (LC25000 lung_aca) sits
  at hue 215-280 but below that saturation where its hue is under 235 deg (2e-5 of its pixels
  meet both);
- green ink: hue 60-180 deg with saturation > 0.25 (no H&E stain is green);
- black ink: every channel below 80 (tissue on a thumbnail never gets that dark).

The pen mask is opened (lone pixels are not pen) and dilated by ``pen_margin`` pixels (the ink's
anti-aliased rim). Tissue components smaller than ``min_tissue`` and holes smaller than
``max_hole`` (both in patch areas) are removed / filled, so pale stroma inside tissue does not
punch holes in the grid while a real gap in the tissue, at least a patch wide, stays a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomedclip.imaging.tissue import tissue_mask

BLUE_HUE = (180.0, 235.0)
BLUE_MIN_SATURATION = 0.5
GREEN_HUE = (60.0, 180.0)
GREEN_MIN_SATURATION = 0.25
BLACK_MAX_VALUE = 80


@dataclass(frozen=True)
class TissueSettings:
    """How tissue is found on the thumbnail. Areas are in patch areas (a patch's footprint on the
    thumbnail), so they mean the same at every thumbnail size and magnification."""

    pen: bool = True  # reject blue, green and black pen marks
    pen_margin: int = 1  # thumbnail pixels added around pen marks
    min_tissue: float = 0.25  # drop tissue components smaller than this many patch areas
    max_hole: float = 0.5  # fill holes smaller than this many patch areas


def hue_saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees), saturation (0-1) and value (0-255) of an ``[H, W, 3]`` uint8 image."""
    x = rgb[..., :3].astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    d = np.maximum(mx - mn, 1e-6)
    hue = np.where(mx == r, (g - b) / d % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    hue = np.where(mx - mn < 1e-6, 0.0, hue * 60.0)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    return hue, sat, mx


def pen_mask(rgb: np.ndarray, margin: int = 1) -> np.ndarray:
    """Boolean mask of blue, green and black pen ink on an RGB thumbnail."""
    from scipy import ndimage

    hue, sat, val = hue_saturation(rgb)
    blue = (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (sat > BLUE_MIN_SATURATION)
    green = (hue >= GREEN_HUE[0]) & (hue < GREEN_HUE[1]) & (sat > GREEN_MIN_SATURATION)
    black = val < BLACK_MAX_VALUE
    pen = ndimage.binary_opening(blue | green | black, structure=np.ones((2, 2), bool))
    if margin > 0 and pen.any():
        pen = ndimage.binary_dilation(pen, structure=np.ones((3, 3), bool), iterations=margin)
    return pen


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    from scipy import ndimage

    if min_px <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def segment_tissue(
    rgb: np.ndarray, patch_px: float, settings: TissueSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(tissue, pen)`` boolean masks of an ``[H, W, 3]`` uint8 thumbnail; ``patch_px`` is a
    patch's side in thumbnail pixels (the unit of the area thresholds)."""
    from scipy import ndimage

    s = settings or TissueSettings()
    area = max(float(patch_px) ** 2, 1.0)
    pen = pen_mask(rgb, s.pen_margin) if s.pen else np.zeros(rgb.shape[:2], bool)
    tissue = tissue_mask(rgb) & ~pen
    tissue = _drop_small(tissue, s.min_tissue * area)
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    if holes.any():
        small = holes & ~_drop_small(holes, s.max_hole * area)
        tissue = tissue | small
    return tissue & ~pen, pen
