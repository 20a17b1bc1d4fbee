"""Whole-slide backends: OpenSlide (every vendor format it knows) or tifffile (pyramidal TIFF).

Both expose the same small surface (``level_dimensions``, ``level_downsamples``,
``objective_power``, ``mpp``, ``read_region``) and both ask the read's
:class:`~biomedclip.imaging.budget.DecodeBudget` before every allocation: the tiles a region
needs (their declared size, from the TIFF tags or OpenSlide's tile properties), the region
buffer and the RGB result.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import numpy as np
from PIL import Image

from biomedclip.errors import ImageDecodeError
from biomedclip.imaging.budget import DecodeBudget
from biomedclip.imaging.source import FATAL

INSTALL_HINT = "pip install 'biomedclip[wsi]'"
# Decoded tiles kept for neighbouring regions (tifffile backend), at most this many bytes.
TILE_CACHE_BYTES = 64 * 2**20
_UM_PER_UNIT = {2: 25_400.0, 3: 10_000.0}  # TIFF ResolutionUnit: inch, centimetre


def openslide_module():
    """The ``openslide`` module, or ``None`` when the ``wsi`` extra is not installed."""
    try:
        import openslide
    except (ImportError, OSError):
        return None
    return openslide


def positive_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def mpp_from_resolution(xres, unit) -> float | None:
    """Microns per pixel from a TIFF ``XResolution`` (pixels per unit) and ``ResolutionUnit``."""
    if isinstance(xres, tuple) and len(xres) == 2:
        xres = xres[0] / xres[1] if xres[1] else None
    px_per_unit = positive_float(xres)
    try:
        um = _UM_PER_UNIT.get(int(unit))
    except (TypeError, ValueError):
        um = {"inch": 25_400.0, "centimeter": 10_000.0}.get(str(unit).lower())
    if px_per_unit is None or um is None:
        return None
    mpp = um / px_per_unit
    return mpp if 0.01 <= mpp <= 1000 else None  # a default 72 dpi tag is not a scan resolution


class OpenSlideBackend:
    name = "openslide"

    def __init__(self, path: str, budget: DecodeBudget):
        self.budget = budget
        self.slide = openslide_module().OpenSlide(path)
        props = self.slide.properties
        self.level_dimensions = list(self.slide.level_dimensions)
        self.level_downsamples = list(self.slide.level_downsamples)
        self.vendor = props.get("openslide.vendor")
        self.objective_power = positive_float(props.get("openslide.objective-power"))
        self.mpp = positive_float(props.get("openslide.mpp-x")) or mpp_from_resolution(
            props.get("tiff.XResolution"), props.get("tiff.ResolutionUnit")
        )
        self.tile_sizes = [
            (
                int(props.get(f"openslide.level[{i}].tile-width", 0) or 0),
                int(props.get(f"openslide.level[{i}].tile-height", 0) or 0),
            )
            for i in range(len(self.level_dimensions))
        ]

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> Image.Image:
        tw, th = self.tile_sizes[level]
        # OpenSlide decodes whole tiles into its cache (4 bytes a pixel), then the RGBA region,
        # the white backdrop and the composite; the RGB result stays with the caller.
        with (
            self.budget.hold(4 * tw * th, f"decode a {tw}x{th} slide tile"),
            self.budget.hold(12 * w * h, f"read a {w}x{h} slide region"),
        ):
            region = self.slide.read_region((x, y), level, (w, h))
            white = Image.new("RGBA", region.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(white, region)
            del region, white
            return rgba.convert("RGB")

    def close(self) -> None:
        self.slide.close()


class TiffBackend:
    """Pyramidal TIFF through tifffile: levels are the tiled pages with level 0's aspect."""

    name = "tifffile"

    def __init__(self, fp_or_path, budget: DecodeBudget):
        import tifffile

        self.budget = budget
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
        self.objective_power = positive_float(m.group(1)) if m else None
        m = re.search(r"MPP\s*=\s*([\d.]+)", desc)
        self.mpp = positive_float(m.group(1)) if m else None
        if self.mpp is None:
            tags = base.tags
            xres, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
            if xres is not None and unit is not None:
                self.mpp = mpp_from_resolution(xres.value, unit.value)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0

    @staticmethod
    def segment_shape(page) -> tuple[int, int, int, int]:
        """(depth, rows, cols, samples) of one decoded tile or strip, from the tags."""
        samples = max(int(page.samplesperpixel), 1)
        if page.is_tiled:
            return (max(int(page.tiledepth), 1), page.tilelength, page.tilewidth, samples)
        return (1, page.rowsperstrip or page.imagelength, page.imagewidth, samples)

    def _evict(self, keep: int) -> None:
        while self._cache and self._cached_bytes > keep:
            _, seg = self._cache.popitem(last=False)
            self._cached_bytes -= seg.nbytes
            self.budget.release(seg.nbytes)

    def _segment(self, page, index: int) -> np.ndarray:
        key = (id(page), index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        shape = self.segment_shape(page)
        itemsize = np.dtype(page.dtype).itemsize if page.dtype is not None else 8
        stored = int(page.databytecounts[index])
        # the compressed bytes, the decoded tile, and tifffile's working copy while decoding
        need = stored + 2 * math.prod(shape) * itemsize
        room = TILE_CACHE_BYTES - math.prod(shape) * itemsize
        if self.budget.max_bytes is not None:  # the cache gives way to the tile being decoded
            others = self.budget.used - self._cached_bytes
            room = min(room, self.budget.max_bytes - others - need)
        self._evict(max(room, 0))
        with self.budget.hold(need, f"decode a {shape[2]}x{shape[1]} slide tile"):
            fh = self.tif.filehandle
            fh.seek(page.dataoffsets[index])
            data = fh.read(stored)
            try:
                seg, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            except FATAL:
                raise
            except BaseException as e:
                raise ImageDecodeError(
                    f"tifffile cannot decode tiles ({type(e).__name__}: {e}); for JPEG-compressed "
                    f"slides install OpenSlide ({INSTALL_HINT}) or imagecodecs"
                ) from e
            del data
            seg = np.asarray(seg).reshape(seg.shape[-3:])
        self.budget.ask(seg.nbytes, "cache a decoded slide tile")
        self._cache[key] = seg
        self._cached_bytes += seg.nbytes
        return seg

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> Image.Image:
        page = self.pages[level]
        ds = self.level_downsamples[level]
        lx, ly = int(round(x / ds)), int(round(y / ds))
        W, H = page.imagewidth, page.imagelength
        _, th, tw, _ = self.segment_shape(page)
        across = math.ceil(W / tw)
        with self.budget.hold(3 * w * h, f"assemble a {w}x{h} slide region"):
            out = np.full((h, w, 3), 255, np.uint8)
            for ty in range(max(ly, 0) // th, min(ly + h, H) // th + 1):
                for tx in range(max(lx, 0) // tw, min(lx + w, W) // tw + 1):
                    if tx * tw >= W or ty * th >= H:
                        continue
                    x0, y0 = max(lx, tx * tw), max(ly, ty * th)
                    x1 = min(lx + w, tx * tw + tw, W)
                    y1 = min(ly + h, ty * th + th, H)
                    if x1 <= x0 or y1 <= y0:
                        continue
                    seg = self._segment(page, ty * across + tx if page.is_tiled else ty)
                    part = seg[y0 - ty * th : y1 - ty * th, x0 - tx * tw : x1 - tx * tw, :3]
                    out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = to_uint8(part, self.budget)
            with self.budget.hold(4 * w * h, "convert a slide region to RGB"):
                return Image.fromarray(out, "RGB")

    def close(self) -> None:
        self._evict(0)
        self.tif.close()


def to_uint8(a: np.ndarray, budget: DecodeBudget) -> np.ndarray:
    """Samples of any dtype -> uint8 (integers scaled by their range, floats by the maximum)."""
    if a.dtype == np.uint8:
        return a
    with budget.hold(a.size * 8, "scale slide samples to 8 bits"):
        if a.dtype.kind in "ui":
            top = float(np.iinfo(a.dtype).max)
        else:
            top = float(np.nanmax(a)) if a.size else 1.0
            top = top if math.isfinite(top) and top > 0 else 1.0
        return np.clip(a.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
