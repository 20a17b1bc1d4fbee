"""Whole-slide images: an open :class:`Slide` (levels, resolution, budgeted region reads) and
tissue tiles at a level or magnification (:func:`read_wsi`, behind ``read_image``).

OpenSlide (the ``wsi`` extra) reads every vendor format it knows; without it, pyramidal TIFF
(including Aperio SVS with a codec that tifffile decodes) is read with tifffile, tile by tile
(:mod:`.slide_backends`). Every read asks the slide's
:class:`~biomedclip.imaging.budget.DecodeBudget` first. Tiles are laid on a grid at the chosen
resolution; a tile is kept when the tissue fraction of its footprint on the thumbnail mask
reaches ``tissue_fraction``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from biomedclip.errors import (
    ImageDecodeError,
    ImageDependencyError,
    ImageError,
    ImageTooLargeError,
    NoTissueError,
)
from biomedclip.imaging.budget import DecodeBudget
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.slide_backends import (
    INSTALL_HINT,
    OpenSlideBackend,
    TiffBackend,
    openslide_module,
)
from biomedclip.imaging.source import FATAL, Source, decoder_errors
from biomedclip.imaging.tissue import tissue_mask

WSI_VENDORS = (
    "aperio",
    "hamamatsu",
    "leica",
    "mirax",
    "philips",
    "sakura",
    "trestle",
    "ventana",
    "zeiss",
    "dicom",
)


# tissue_mask's float32 copy of the thumbnail, its max / min / saturation planes and Otsu's
# float64 copies: what finding tissue costs per thumbnail pixel.
TISSUE_BYTES_PER_PIXEL = 48


def openslide_vendor(path) -> str | None:
    mod = openslide_module()
    if mod is None or path is None:
        return None
    try:
        return mod.OpenSlide.detect_format(str(path))
    except FATAL:
        raise
    except BaseException:
        return None


def openslide_safe_tiff(path: str, max_pages: int = 64) -> bool:
    """Whether a TIFF pyramid is one OpenSlide may open: every tiled page has the same tile
    size. OpenSlide 4 dies with SIGFPE (the whole process, not an exception) opening some
    pyramids whose levels declare different tile sizes (found by tests/imaging fuzzing), so
    those are read with tifffile instead."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            sizes = {
                (int(p.tilewidth), int(p.tilelength))
                for p in tif.pages[:max_pages]
                if getattr(p, "is_tiled", False)
            }
    except FATAL:
        raise
    except BaseException:
        return False
    return len(sizes) <= 1


class Slide:
    """An open whole slide: level geometry, resolution and region reads that ask the budget.

    Coordinates are level-0 pixels. ``mpp`` is microns per level-0 pixel (OpenSlide's
    ``openslide.mpp-x``, Aperio's ``MPP``, or the TIFF resolution tags), ``None`` when the file
    does not say. Use :func:`open_slide`; close it (or use it as a context manager).
    """

    def __init__(self, backend, name: str, budget: DecodeBudget, tmp: str | None = None):
        self.backend, self.name, self.budget, self._tmp = backend, name, budget, tmp
        self.level_dimensions: list[tuple[int, int]] = [
            (int(w), int(h)) for w, h in backend.level_dimensions
        ]
        self.level_downsamples: list[float] = [float(d) for d in backend.level_downsamples]
        self.objective_power: float | None = backend.objective_power
        self.mpp: float | None = backend.mpp
        self.vendor: str | None = backend.vendor

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def best_level(self, downsample: float) -> int:
        """The highest-resolution level whose downsample does not exceed ``downsample``."""
        fits = [i for i, d in enumerate(self.level_downsamples) if d <= downsample * 1.001]
        return max(fits) if fits else 0

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> Image.Image:
        """RGB ``w`` x ``h`` pixels of ``level`` whose top-left is level-0 ``(x, y)``; white
        outside the slide."""
        if not 0 <= level < self.level_count:
            raise ImageError(
                f"level {level} requested but the slide has {self.level_count}", self.name
            )
        with decoder_errors(self.name, "read slide region"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.backend.read_region(int(x), int(y), int(level), int(w), int(h))

    def read_patch(self, x: int, y: int, level: int, read_size: int, size: int) -> Image.Image:
        """A square region of ``read_size`` px at ``level``, resized to ``size`` (Lanczos)."""
        im = self.read_region(x, y, level, read_size, read_size)
        if read_size != size:
            with self.budget.hold(4 * size * size, "resize a slide patch"):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
        return im

    def thumbnail(self, max_side: int) -> Image.Image:
        """The whole slide at (about) ``max_side`` px, from the smallest level large enough."""
        W, H = self.dimensions
        level = self.best_level(max(max(W, H) / max_side, 1.0))
        w, h = self.level_dimensions[level]
        if self.budget.max_bytes is not None and 4 * w * h > self.budget.max_bytes:
            raise ImageTooLargeError(
                f"the smallest usable slide level is {w}x{h}, over the decode budget; the slide "
                "has no suitable pyramid",
                self.name,
            )
        with self.budget.hold(4 * w * h, f"read the {w}x{h} slide level for a thumbnail"):
            im = self.read_region(0, 0, level, w, h)
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return im

    def metadata(self) -> dict:
        W, H = self.dimensions
        return {
            "format": "wsi",
            "source": self.name,
            "backend": self.backend.name,
            "vendor": self.vendor,
            "dimensions": [W, H],
            "level_count": self.level_count,
            "level_downsamples": [round(d, 4) for d in self.level_downsamples],
            "objective_power": self.objective_power,
            "mpp": self.mpp,
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.backend.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(
    source: str | Path | bytes | Source,
    options: ReadOptions | None = None,
    budget: DecodeBudget | None = None,
) -> Slide:
    """Open a whole slide (OpenSlide when it knows the format, else tifffile for TIFF).

    ``budget`` defaults to the one of ``options.max_pixels``; every region, tile and thumbnail
    read asks it first. Errors are :class:`~biomedclip.errors.ImageError` naming the slide.
    """
    src = source if isinstance(source, Source) else Source.of(source)
    options = options or ReadOptions()
    name = src.name
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, name)
    tmp = None
    try:
        with decoder_errors(name, "read slide"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = str(src.path) if src.path is not None else None
            if path is None:  # OpenSlide needs a file
                budget.ask(len(src.data or b""), "copy the slide to a temporary file")
                fd, tmp = tempfile.mkstemp(suffix=".tiff")
                with os.fdopen(fd, "wb") as f:
                    f.write(src.read_all())
                path = tmp
            is_tiff = src.head(4)[:2] in (b"II", b"MM")
            vendor = openslide_vendor(path)
            if vendor is not None and is_tiff and not openslide_safe_tiff(path):
                vendor = None  # read with tifffile, under the budget
            if vendor is not None:
                backend = OpenSlideBackend(path, budget)
            elif is_tiff:
                backend = TiffBackend(path, budget)
            elif openslide_module() is None:
                raise ImageDependencyError(
                    f"whole-slide images need OpenSlide: {INSTALL_HINT}", name
                )
            else:
                raise ImageDecodeError("OpenSlide does not recognise this slide", name)
            if not backend.level_dimensions or min(backend.level_dimensions[0]) < 1:
                backend.close()
                raise ImageDecodeError("the slide declares no usable level", name)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return Slide(backend, name, budget, tmp)


# ---- tiling ---------------------------------------------------------------------------------
@dataclass
class TilePlan:
    level: int
    downsample: float  # level-0 pixels per output pixel
    read_size: int  # pixels read at `level` per tile (resized to tile_size when != tile_size)
    magnification: float | None


def plan_tiles(slide: Slide, options: ReadOptions, name: str) -> TilePlan:
    n_levels = slide.level_count
    if options.magnification is not None:
        power = slide.objective_power
        if power is None:
            raise ImageError(
                "the slide has no objective-power metadata; choose a --level "
                "instead of a magnification",
                name,
            )
        if options.magnification > power * 1.001:
            raise ImageError(
                f"magnification {options.magnification:g}x is above the scan's {power:g}x", name
            )
        target = power / options.magnification
        level = slide.best_level(target)
        read = int(round(options.tile_size * target / slide.level_downsamples[level]))
        return TilePlan(level, target, max(read, 1), options.magnification)
    level = options.level or 0
    if not 0 <= level < n_levels:
        raise ImageError(f"level {level} requested but the slide has {n_levels} level(s)", name)
    ds = slide.level_downsamples[level]
    mag = slide.objective_power / ds if slide.objective_power else None
    return TilePlan(level, ds, options.tile_size, mag)


def tissue_cells(
    mask: np.ndarray, W: int, H: int, step: float, nx: int, ny: int, min_fraction: float
) -> list[tuple[int, int, float]]:
    """Grid cells (level-0 x, y, tissue fraction) whose footprint on the thumbnail ``mask``
    holds at least ``min_fraction`` tissue, row by row (an integral image: no Python loop over
    the cells)."""
    mh, mw = mask.shape
    sx, sy = mw / W, mh / H
    integral = np.zeros((mh + 1, mw + 1), np.int64)
    np.cumsum(np.cumsum(mask, axis=0), axis=1, out=integral[1:, 1:])

    def bounds(n: int, scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        start = np.arange(n) * step
        lo = (start * scale).astype(np.int64)
        hi = np.maximum(((start + step) * scale).astype(np.int64), lo + 1)
        return np.minimum(lo, size), np.minimum(hi, size)

    c0, c1 = bounds(nx, sx, mw)
    r0, r1 = bounds(ny, sy, mh)
    count = (
        integral[r1[:, None], c1[None, :]]
        - integral[r0[:, None], c1[None, :]]
        - integral[r1[:, None], c0[None, :]]
        + integral[r0[:, None], c0[None, :]]
    )
    area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    frac = np.where(area > 0, count / np.maximum(area, 1), 0.0)
    jj, ii = np.nonzero(frac >= min_fraction)
    return [
        (int(round(i * step)), int(round(j * step)), float(frac[j, i]))
        for j, i in zip(jj.tolist(), ii.tolist())
    ]


def read_wsi(src: Source, options: ReadOptions, budget: DecodeBudget | None = None) -> ImageRecord:
    with open_slide(src, options, budget) as slide, decoder_errors(src.name, "read slide"):
        return _tiles(slide, options, src.name)


def _tiles(slide: Slide, options: ReadOptions, name: str) -> ImageRecord:
    W, H = slide.dimensions
    meta = slide.metadata()
    budget = slide.budget
    thumb = slide.thumbnail(options.thumbnail_size)
    if options.wsi == "thumbnail":
        meta["items"] = [{"thumbnail": True, "size": list(thumb.size)}]
        im = thumb if options.mode is None else thumb.convert(options.mode)
        return ImageRecord([im], meta)

    plan = plan_tiles(slide, options, name)
    if options.max_pixels and plan.read_size**2 > options.max_pixels:
        raise ImageTooLargeError(f"a tile of {plan.read_size}^2 px exceeds the pixel limit", name)
    step = options.tile_size * plan.downsample  # level-0 pixels per tile
    nx, ny = int(W // step), int(H // step)
    with budget.hold(thumb.width * thumb.height * TISSUE_BYTES_PER_PIXEL, "find tissue"):
        mask = tissue_mask(np.asarray(thumb))
    with budget.hold(nx * ny * 32 + 8 * mask.size, f"score a {nx}x{ny} tile grid"):
        candidates = tissue_cells(mask, W, H, step, nx, ny, options.tissue_fraction)
    meta.update(
        {
            "level": plan.level,
            "downsample": round(plan.downsample, 4),
            "magnification": plan.magnification,
            "tile_size": options.tile_size,
            "grid": [nx, ny],
            "tissue_tiles": len(candidates),
        }
    )
    if not candidates:
        raise NoTissueError(
            f"no {options.tile_size}px tile with >= {options.tissue_fraction:.0%} tissue among "
            f"{nx * ny} grid tiles (lower tissue_fraction / --tissue-fraction, or choose a "
            "higher-resolution level)",
            name,
        )
    if options.max_tiles and len(candidates) > options.max_tiles:  # evenly spaced, deterministic
        keep = np.linspace(0, len(candidates) - 1, options.max_tiles).round().astype(int)
        candidates = [candidates[k] for k in sorted(set(keep.tolist()))]
        meta["sampled"] = True
    images, items = [], []
    for x0, y0, frac in candidates:
        # every kept tile stays alive in the record: its bytes stay reserved
        budget.ask(4 * options.tile_size**2, "keep a slide tile")
        tile = slide.read_patch(x0, y0, plan.level, plan.read_size, options.tile_size)
        images.append(tile if options.mode in (None, "RGB") else tile.convert(options.mode))
        items.append(
            {"tile": True, "x": x0, "y": y0, "level": plan.level, "tissue": round(frac, 3)}
        )
    meta["items"] = items
    return ImageRecord(images, meta)
