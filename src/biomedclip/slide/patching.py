"""Patch coordinates of a whole slide: a grid at a target resolution over its tissue.

The target is a magnification (``20`` = 20x) or microns per pixel (``0.5``); 20x is taken as
0.5 um/px (``mpp = 10 / magnification``, the usual scanner convention). The slide's own
resolution comes from its metadata (OpenSlide ``openslide.mpp-x``, Aperio ``MPP``, TIFF
resolution tags; else its objective power under the same convention) or from ``mpp`` given by
the user for slides that state none; a slide with neither is refused with :class:`SlideResolutionError`.

A patch of ``patch_size`` px at the target covers ``patch_size_level0`` level-0 pixels; it is
read from the best pyramid level (the coarsest one at least as fine as the target) and resized.
Coordinates are level-0 pixels of the patch's top-left corner, on a grid from (0, 0) with a
step of ``patch_size_level0`` (no overlap), kept when the tissue mask of the thumbnail
(:mod:`.tissue`) covers at least ``tissue_fraction`` of the patch's footprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import ImageError, InputError
from biomedclip.slide.tissue import TissueSettings, segment_tissue

DEFAULT_PATCH_SIZE = 224
DEFAULT_TARGET_MPP = 0.5  # 20x


class SlideResolutionError(ImageError):
    """The slide says nothing of its resolution and none was given."""


def mpp_of_magnification(magnification: float) -> float:
    return 10.0 / float(magnification)


@dataclass(frozen=True)
class PatchSettings:
    """Where patches come from: size and target resolution, tissue detection.

    ``magnification`` and ``target_mpp`` name the same target (give one; default 20x / 0.5
    um/px). ``slide_mpp`` is the level-0 resolution of slides that do not state theirs
    (``--mpp``); a slide's own metadata wins.
    """

    patch_size: int = DEFAULT_PATCH_SIZE
    magnification: float | None = None
    target_mpp: float | None = None
    slide_mpp: float | None = None
    tissue_fraction: float = 0.5
    thumbnail_size: int = 2048  # at most this many px per side for the tissue mask
    mask_px_per_patch: int = 8  # and no more than needed for this many px per patch side
    tissue: TissueSettings = field(default_factory=TissueSettings)

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise InputError(f"patch size {self.patch_size}: use at least 8 px")
        if self.magnification is not None and self.target_mpp is not None:
            raise InputError("give a target magnification or a target mpp, not both")
        for name in ("magnification", "target_mpp", "slide_mpp"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"{name} must be > 0 (got {v})")
        if not 0.0 < self.tissue_fraction <= 1.0:
            raise InputError("tissue fraction must be within (0, 1]")
        if self.thumbnail_size < 64 or self.mask_px_per_patch < 1:
            raise InputError("thumbnail size must be at least 64 px, mask px per patch >= 1")

    @property
    def mpp(self) -> float:
        """The target microns per pixel."""
        if self.target_mpp is not None:
            return float(self.target_mpp)
        if self.magnification is not None:
            return mpp_of_magnification(self.magnification)
        return DEFAULT_TARGET_MPP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What makes two extractions comparable (not the fallback ``slide_mpp``: each file
        records the resolution its slide was patched at)."""
        d = self.to_dict()
        d.pop("slide_mpp")
        d["target_mpp"] = self.mpp
        d.pop("magnification")
        return d


@dataclass
class PatchPlan:
    """A slide's patches: level-0 ``coords`` and how each patch is read."""

    name: str
    coords: np.ndarray  # [N, 2] int64 level-0 (x, y)
    patch_size: int
    patch_size_level0: int
    level: int
    read_size: int  # pixels read at ``level``, resized to ``patch_size``
    slide_mpp: float
    mpp_source: str  # "metadata", "objective_power" or "user"
    target_mpp: float
    dimensions: tuple[int, int]
    level_downsample: float
    grid: tuple[int, int]
    tissue_fraction: float
    thumbnail: Any = None  # the PIL thumbnail the mask was made on
    tissue: np.ndarray | None = None  # its tissue mask
    pen: np.ndarray | None = None  # its pen mask

    @property
    def target_magnification(self) -> float:
        return round(mpp_of_magnification(self.target_mpp), 4)

    def attrs(self) -> dict[str, Any]:
        """What a feature file records about the patching."""
        return {
            "patch_size": self.patch_size,
            "patch_size_level0": self.patch_size_level0,
            "target_magnification": self.target_magnification,
            "mpp": self.target_mpp,
            "slide_mpp": self.slide_mpp,
            "slide_mpp_source": self.mpp_source,
            "level": self.level,
            "level_downsample": self.level_downsample,
            "read_size": self.read_size,
            "slide_dimensions": list(self.dimensions),
            "tissue_fraction": self.tissue_fraction,
        }


def slide_resolution(slide, settings: PatchSettings) -> tuple[float, str]:
    """``(level-0 um/px, where it came from)`` or :class:`SlideResolutionError`."""
    if slide.mpp:
        return float(slide.mpp), "metadata"
    if slide.objective_power:
        return mpp_of_magnification(slide.objective_power), "objective_power"
    if settings.slide_mpp is not None:
        return float(settings.slide_mpp), "user"
    raise SlideResolutionError(
        "the slide does not state its resolution (no OpenSlide mpp, Aperio MPP, TIFF "
        "resolution tags or objective power); give it with --mpp (um per level-0 pixel)",
        slide.name,
    )


def _cell_fractions(mask: np.ndarray, W: int, H: int, step: int, nx: int, ny: int) -> np.ndarray:
    """Mean of ``mask`` over each grid cell's footprint on the thumbnail ``[ny, nx]``."""
    mh, mw = mask.shape
    integral = np.zeros((mh + 1, mw + 1), np.float64)
    integral[1:, 1:] = mask.astype(np.float64).cumsum(0).cumsum(1)
    xs = np.arange(nx + 1) * step * mw / W
    ys = np.arange(ny + 1) * step * mh / H
    x0 = np.floor(xs[:-1]).astype(int)
    x1 = np.maximum(np.ceil(xs[1:]).astype(int), x0 + 1).clip(max=mw)
    y0 = np.floor(ys[:-1]).astype(int)
    y1 = np.maximum(np.ceil(ys[1:]).astype(int), y0 + 1).clip(max=mh)
    s = integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
    area = np.outer(y1 - y0, x1 - x0)
    return s / np.maximum(area, 1)


def plan_patches(slide, settings: PatchSettings | None = None) -> PatchPlan:
    """The tissue patch grid of an open :class:`~biomedclip.imaging.wsi.Slide`."""
    s = settings or PatchSettings()
    slide_mpp, source = slide_resolution(slide, s)
    downsample = s.mpp / slide_mpp  # level-0 pixels per target pixel
    if downsample < 0.999:
        raise ImageError(
            f"the target ({s.mpp:g} um/px, {mpp_of_magnification(s.mpp):g}x) is finer than the "
            f"scan ({slide_mpp:g} um/px); choose a lower magnification",
            slide.name,
        )
    ps0 = max(int(round(s.patch_size * downsample)), 1)
    level = slide.best_level(downsample)
    level_ds = slide.level_downsamples[level]
    read_size = max(int(round(ps0 / level_ds)), 1)
    W, H = slide.dimensions
    nx, ny = W // ps0, H // ps0
    side = int(np.ceil(max(W, H) / ps0 * s.mask_px_per_patch))
    thumb = slide.thumbnail(min(s.thumbnail_size, max(side, 256)))
    rgb = np.asarray(thumb.convert("RGB"))
    with slide.budget.hold(rgb.shape[0] * rgb.shape[1] * 40, "find tissue on the thumbnail"):
        tissue, pen = segment_tissue(rgb, ps0 * rgb.shape[1] / W, s.tissue)
    if nx and ny:
        frac = _cell_fractions(tissue, W, H, ps0, nx, ny)
        jj, ii = np.nonzero(frac >= s.tissue_fraction)  # row-major: y then x
        coords = np.stack([ii * ps0, jj * ps0], axis=1).astype(np.int64)
    else:
        coords = np.zeros((0, 2), np.int64)
    return PatchPlan(
        name=slide.name,
        coords=coords.reshape(-1, 2),
        patch_size=s.patch_size,
        patch_size_level0=ps0,
        level=level,
        read_size=read_size,
        slide_mpp=slide_mpp,
        mpp_source=source,
        target_mpp=s.mpp,
        dimensions=(W, H),
        level_downsample=float(level_ds),
        grid=(nx, ny),
        tissue_fraction=s.tissue_fraction,
        thumbnail=thumb,
        tissue=tissue,
        pen=pen,
    )


def preview(plan: PatchPlan, path: str | Path | None = None, slide=None, size: int = 1024):
    """The thumbnail with the tissue tinted green, pen marks red and every patch outlined in blue;
    saved as PNG at ``path`` when given. With the open ``slide``, the picture is drawn on a
    thumbnail of ``size`` px (the mask's own thumbnail is often smaller). Returns the PIL image."""
    from PIL import Image, ImageDraw

    thumb = plan.thumbnail
    if slide is not None and size > max(thumb.size):
        thumb = slide.thumbnail(size)
    thumb = thumb.convert("RGB")
    rgb = np.asarray(thumb).astype(np.float32)

    def fit(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None or mask.shape == rgb.shape[:2]:
            return mask
        im = Image.fromarray(mask.astype(np.uint8) * 255).resize(thumb.size, Image.NEAREST)
        return np.asarray(im) > 127

    tissue, pen = fit(plan.tissue), fit(plan.pen)
    if tissue is not None:
        rgb[tissue] = 0.75 * rgb[tissue] + 0.25 * np.array([0, 200, 0])
    if pen is not None:
        rgb[pen] = 0.5 * rgb[pen] + 0.5 * np.array([255, 0, 0])
    im = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    W, H = plan.dimensions
    sx, sy = im.width / W, im.height / H
    ps = plan.patch_size_level0
    for x, y in plan.coords.tolist():
        box = [x * sx, y * sy, (x + ps) * sx - 1, (y + ps) * sy - 1]
        draw.rectangle(box, outline=(0, 90, 255), width=1)
    if path is not None:
        from biomedclip.io_utils import atomic_path

        with atomic_path(Path(path)) as tmp:
            im.save(tmp, format="PNG")
    return im
