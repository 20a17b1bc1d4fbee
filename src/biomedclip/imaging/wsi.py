"""Whole-slide images: tissue tiles at a level or magnification (OpenSlide, or tifffile).

OpenSlide (the ``wsi`` extra) reads every vendor format it knows; without it, pyramidal TIFF
(including Aperio SVS with a codec that tifffile decodes) is read with tifffile, tile by tile.
Tiles are laid on a grid at the chosen resolution; a tile is kept when the tissue fraction of its
footprint on the thumbnail mask reaches ``tissue_fraction``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from biomedclip.errors import (
    ImageDecodeError,
    ImageDependencyError,
    ImageError,
    ImageTooLargeError,
    NoTissueError,
)
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.source import FATAL, Source, decoder_errors
from biomedclip.imaging.tissue import tissue_mask

INSTALL_HINT = "pip install 'biomedclip[wsi]'"
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


def openslide_module():
    """The ``openslide`` module, or ``None`` when the ``wsi`` extra is not installed."""
    try:
        import openslide
    except (ImportError, OSError):
        return None
    return openslide


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


# ---- backends ------------------------------------------------------------------------------
class _OpenSlideBackend:
    name = "openslide"

    def __init__(self, path: str):
        mod = openslide_module()
        self.slide = mod.OpenSlide(path)
        props = self.slide.properties
        self.level_dimensions = list(self.slide.level_dimensions)
        self.level_downsamples = list(self.slide.level_downsamples)
        self.vendor = props.get("openslide.vendor")
        self.objective_power = _float(props.get("openslide.objective-power"))
        self.mpp = _float(props.get("openslide.mpp-x"))

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> Image.Image:
        region = self.slide.read_region((x, y), level, (w, h))  # RGBA, transparent outside
        white = Image.new("RGBA", region.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, region).convert("RGB")

    def close(self) -> None:
        self.slide.close()


class _TiffBackend:
    """Pyramidal TIFF through tifffile: levels are the tiled pages with level 0's aspect."""

    name = "tifffile"

    def __init__(self, fp_or_path):
        import tifffile

        self.tif = tifffile.TiffFile(fp_or_path)
        pages = [p for p in self.tif.pages if p.is_tiled and p.samplesperpixel >= 3]
        pages = (
            pages or [p for p in self.tif.pages if p.samplesperpixel >= 3] or list(self.tif.pages)
        )
        pages.sort(key=lambda p: -p.imagewidth)
        base = pages[0]
        aspect = base.imagewidth / max(base.imagelength, 1)
        self.pages = [
            p
            for p in pages
            if abs(p.imagewidth / max(p.imagelength, 1) - aspect) < 0.02 * aspect + 0.02
        ]
        self.level_dimensions = [(p.imagewidth, p.imagelength) for p in self.pages]
        self.level_downsamples = [base.imagewidth / p.imagewidth for p in self.pages]
        desc = base.description or ""
        self.vendor = "aperio" if desc.startswith("Aperio") else "generic-tiff"
        m = re.search(r"AppMag\s*=\s*([\d.]+)", desc)
        self.objective_power = _float(m.group(1)) if m else None
        m = re.search(r"MPP\s*=\s*([\d.]+)", desc)
        self.mpp = _float(m.group(1)) if m else None
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _segment(self, page, index: int) -> np.ndarray:
        key = (id(page), index)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            fh = self.tif.filehandle
            fh.seek(page.dataoffsets[index])
            data = fh.read(page.databytecounts[index])
            try:
                seg, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            except FATAL:
                raise
            except BaseException as e:
                raise ImageDecodeError(
                    f"tifffile cannot decode tiles ({type(e).__name__}: {e}); for JPEG-compressed "
                    f"slides install OpenSlide ({INSTALL_HINT}) or imagecodecs"
                ) from e
            self._cache[key] = np.asarray(seg).reshape(seg.shape[-3:])
        return self._cache[key]

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> Image.Image:
        page = self.pages[level]
        ds = self.level_downsamples[level]
        lx, ly = int(round(x / ds)), int(round(y / ds))
        out = np.full((h, w, 3), 255, np.uint8)
        W, H = page.imagewidth, page.imagelength
        if page.is_tiled:
            tw, th = page.tilewidth, page.tilelength
        else:
            tw, th = W, page.rowsperstrip or H
        across = math.ceil(W / tw)
        for ty in range(max(ly, 0) // th, min(ly + h, H) // th + 1):
            for tx in range(max(lx, 0) // tw, min(lx + w, W) // tw + 1):
                if tx * tw >= W or ty * th >= H:
                    continue
                idx = ty * across + tx if page.is_tiled else ty
                seg = self._segment(page, idx)[..., :3]
                seg = _to_uint8(seg)
                # overlap of the segment with the requested region
                x0, y0 = max(lx, tx * tw), max(ly, ty * th)
                x1 = min(lx + w, tx * tw + tw, W)
                y1 = min(ly + h, ty * th + th, H)
                if x1 <= x0 or y1 <= y0:
                    continue
                out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = seg[
                    y0 - ty * th : y1 - ty * th, x0 - tx * tw : x1 - tx * tw
                ]
        return Image.fromarray(out, "RGB")

    def close(self) -> None:
        self.tif.close()


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    top = float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else float(a.max() or 1.0)
    return np.clip(a.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


# ---- tiling ---------------------------------------------------------------------------------
@dataclass
class TilePlan:
    level: int
    downsample: float  # level-0 pixels per output pixel
    read_size: int  # pixels read at `level` per tile (resized to tile_size when != tile_size)
    magnification: float | None


def plan_tiles(backend, options: ReadOptions, name: str) -> TilePlan:
    n_levels = len(backend.level_dimensions)
    if options.magnification is not None:
        power = backend.objective_power
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
        # best level: the highest resolution whose downsample does not exceed the target
        level = max(i for i, d in enumerate(backend.level_downsamples) if d <= target * 1.001)
        read = int(round(options.tile_size * target / backend.level_downsamples[level]))
        return TilePlan(level, target, max(read, 1), options.magnification)
    level = options.level or 0
    if not 0 <= level < n_levels:
        raise ImageError(f"level {level} requested but the slide has {n_levels} level(s)", name)
    ds = backend.level_downsamples[level]
    mag = backend.objective_power / ds if backend.objective_power else None
    return TilePlan(level, ds, options.tile_size, mag)


def _thumbnail(backend, max_side: int, max_pixels: int | None, name: str) -> Image.Image:
    """The whole slide at (about) ``max_side`` px, from the smallest level that is large enough."""
    W, H = backend.level_dimensions[0]
    scale = max(W, H) / max_side
    candidates = [i for i, d in enumerate(backend.level_downsamples) if d <= max(scale, 1.0)]
    level = max(candidates) if candidates else 0
    w, h = backend.level_dimensions[level]
    if max_pixels and w * h > max_pixels:
        raise ImageTooLargeError(
            f"the smallest usable slide level is {w}x{h}, above the pixel limit of "
            f"{max_pixels}; the slide has no suitable pyramid",
            name,
        )
    im = backend.read_region(0, 0, level, w, h)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im


def read_wsi(src: Source, options: ReadOptions) -> ImageRecord:
    name = src.name
    tmp = None
    backend = None
    try:
        with decoder_errors(name, "read slide"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = str(src.path) if src.path is not None else None
            if path is None:  # OpenSlide needs a file
                fd, tmp = tempfile.mkstemp(suffix=".tiff")
                with os.fdopen(fd, "wb") as f:
                    f.write(src.read_all())
                path = tmp
            vendor = openslide_vendor(path)
            if vendor is not None:
                backend = _OpenSlideBackend(path)
            elif src.head(4)[:2] in (b"II", b"MM"):
                backend = _TiffBackend(path)
            elif openslide_module() is None:
                raise ImageDependencyError(
                    f"whole-slide images need OpenSlide: {INSTALL_HINT}", name
                )
            else:
                raise ImageDecodeError("OpenSlide does not recognise this slide", name)
            return _tiles(backend, options, name)
    finally:
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.close()
        if tmp is not None:
            os.unlink(tmp)


def _tiles(backend, options: ReadOptions, name: str) -> ImageRecord:
    W, H = backend.level_dimensions[0]
    meta = {
        "format": "wsi",
        "source": name,
        "backend": backend.name,
        "vendor": backend.vendor,
        "dimensions": [W, H],
        "level_count": len(backend.level_dimensions),
        "level_downsamples": [round(d, 4) for d in backend.level_downsamples],
        "objective_power": backend.objective_power,
        "mpp": backend.mpp,
    }
    thumb = _thumbnail(backend, options.thumbnail_size, options.max_pixels, name)
    if options.wsi == "thumbnail":
        meta["items"] = [{"thumbnail": True, "size": list(thumb.size)}]
        im = thumb if options.mode is None else thumb.convert(options.mode)
        return ImageRecord([im], meta)

    plan = plan_tiles(backend, options, name)
    if options.max_pixels and plan.read_size**2 > options.max_pixels:
        raise ImageTooLargeError(f"a tile of {plan.read_size}^2 px exceeds the pixel limit", name)
    step = options.tile_size * plan.downsample  # level-0 pixels per tile
    nx, ny = int(W // step), int(H // step)
    mask = tissue_mask(np.asarray(thumb))
    sx, sy = mask.shape[1] / W, mask.shape[0] / H
    candidates = []
    for j in range(ny):
        for i in range(nx):
            x0, y0 = i * step, j * step
            m = mask[
                int(y0 * sy) : max(int((y0 + step) * sy), int(y0 * sy) + 1),
                int(x0 * sx) : max(int((x0 + step) * sx), int(x0 * sx) + 1),
            ]
            frac = float(m.mean()) if m.size else 0.0
            if frac >= options.tissue_fraction:
                candidates.append((int(round(x0)), int(round(y0)), frac))
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
        tile = backend.read_region(x0, y0, plan.level, plan.read_size, plan.read_size)
        if tile.size != (options.tile_size, options.tile_size):
            tile = tile.resize((options.tile_size, options.tile_size), Image.Resampling.LANCZOS)
        images.append(tile if options.mode in (None, "RGB") else tile.convert(options.mode))
        items.append(
            {"tile": True, "x": x0, "y": y0, "level": plan.level, "tissue": round(frac, 3)}
        )
    meta["items"] = items
    return ImageRecord(images, meta)
