"""Pillow formats (JPEG, PNG, TIFF, BMP, GIF, WebP, ...): orientation, bit depth, alpha, pages."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from biomedclip.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
)
from biomedclip.imaging.budget import DecodeBudget, mode_bytes
from biomedclip.imaging.constants import MAX_FRAMES
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.source import FATAL, Source, decoder_errors
from biomedclip.imaging.windowing import (
    PERCENTILE_BYTES_PER_VALUE,
    percentile_window,
    window_to_uint8,
)

# 8-bit modes that the eval transform converts to RGB itself (after resize and crop, as the
# reference does); with ``mode=None`` they are returned untouched for exact parity.
TRANSFORM_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def frame_indices(n: int, frames: str | int | None, default: str) -> list[int]:
    """Which of ``n`` frames to decode for the ``frames`` option."""
    choice = default if frames is None else frames
    if choice == "all":
        if n > MAX_FRAMES:  # a header can declare 2**31 frames: never list them
            raise ImageTooLargeError(f"{n} frames declared; at most {MAX_FRAMES} can be read")
        return list(range(n))
    if choice == "first":
        return [0]
    if choice == "middle":
        return [(n - 1) // 2]
    if isinstance(choice, int):
        if choice >= n:
            raise ImageError(f"frame {choice} requested but the image has {n} frame(s)")
        return [choice]
    raise ImageError(f"unknown frames option {choice!r}")


def windowed(
    arr: np.ndarray, options: ReadOptions, budget: DecodeBudget
) -> tuple[np.ndarray, dict]:
    """High-depth samples -> uint8 through the user's window or percentiles, asking the budget
    for the percentile copy (transient) and the 8-bit result (kept)."""
    window = options.window_obj
    if window is None:
        with budget.hold(arr.size * PERCENTILE_BYTES_PER_VALUE, "compute percentile window"):
            window = percentile_window(arr, *options.percentiles)
    budget.ask(arr.size, "window to 8 bits")
    return window_to_uint8(arr, window), {"window": window.as_dict()}


def to_display(
    im: Image.Image, options: ReadOptions, budget: DecodeBudget | None = None
) -> tuple[Image.Image, dict]:
    """One decoded frame -> an 8-bit image following ``options`` (+ what was done)."""
    budget = budget or DecodeBudget(None)
    info: dict = {"stored_mode": im.mode}
    w, h = im.size
    if im.mode in HIGH_DEPTH_MODES or im.mode.startswith("I;16"):
        budget.image(w, h, 1, "read high-depth samples", itemsize=4)
        arr = np.asarray(im)
        if arr.ndim != 2:
            arr = np.asarray(im.convert("I"))
        arr, more = windowed(arr, options, budget)
        info.update(more)
        budget.image(w, h, 1, "make an 8-bit image")
        im = Image.fromarray(arr, mode="L")
    elif options.background is not None and (im.mode in ALPHA_MODES or "transparency" in im.info):
        with budget.hold(8 * w * h, "composite alpha onto the background"):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (*options.background, 255))
            rgba = Image.alpha_composite(bg, rgba)
        budget.image(w, h, 4, "convert to RGB")
        im = rgba.convert("RGB")
        info["background"] = list(options.background)
    if options.mode is None and im.mode in TRANSFORM_MODES:
        return im, info
    target = options.mode or "RGB"
    if im.mode != target:
        budget.image(w, h, mode_bytes(target), f"convert to {target}")
    return im.convert(target), info


def draft_jpeg(im: Image.Image, size: int | None) -> dict:
    """Ask the JPEG decoder for a DCT-scaled image (1/2, 1/4, 1/8) whose sides stay >= ``size``.

    Returns ``{"draft_scale": s}`` when the decode was scaled, else ``{}`` (not a JPEG, no
    ``size``, or the image too small to scale).
    """
    if not size or im.format != "JPEG":
        return {}
    width = im.width
    im.draft(im.mode, (size, size))
    return {"draft_scale": round(width / im.width)} if im.width != width else {}


def tiff_segment_bytes(im: Image.Image) -> int:
    """Bytes of one TIFF tile or strip as the tags declare it (what libtiff allocates to decode
    it), 0 for other formats. A tiny image may declare a huge tile."""
    tags = getattr(im, "tag_v2", None)
    if im.format != "TIFF" or tags is None:
        return 0
    try:
        bits = tags.get(258, (8,))
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        samples = int(tags.get(277, 1) or 1)
        if 322 in tags and 323 in tags:
            cols, rows = int(tags[322]), int(tags[323])
        else:
            cols, rows = im.width, int(tags.get(278, im.height) or im.height)
        return max(cols, 0) * max(rows, 0) * max(samples, 1) * max((int(bits) + 7) // 8, 1)
    except (TypeError, ValueError):
        return 0


def read_pillow(
    src: Source, options: ReadOptions, budget: DecodeBudget | None = None
) -> ImageRecord:
    name = src.name
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, name)
    try:
        with src.open() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fp) as im:
                n = int(getattr(im, "n_frames", 1) or 1)
                indices = frame_indices(n, options.frames, default="first")
                pixels = im.width * im.height * len(indices)
                if options.max_pixels and pixels > options.max_pixels:
                    raise ImageTooLargeError(
                        f"{im.width}x{im.height} x {len(indices)} frame(s) exceeds the pixel "
                        f"limit of {options.max_pixels}",
                        name,
                    )
                images, items = [], []
                fmt = im.format
                drafted = draft_jpeg(im, options.draft) if n == 1 else {}
                for i in indices:
                    if n > 1:
                        im.seek(i)
                    w, h = im.size
                    with budget.hold(tiff_segment_bytes(im), "decode a TIFF tile or strip"):
                        budget.image(w, h, mode_bytes(im.mode), f"decode a {w}x{h} {im.mode} frame")
                        im.load()
                    orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
                    if orientation not in (None, 1):
                        budget.image(w, h, mode_bytes(im.mode), "apply the EXIF orientation")
                    frame = ImageOps.exif_transpose(im)
                    out, info = to_display(frame, options, budget)
                    if out is im:
                        budget.image(w, h, mode_bytes(im.mode), "keep the frame")
                        out = im.copy()
                    images.append(out)
                    items.append({"frame": i, **drafted, **info})
                meta = {
                    "format": "pillow",
                    "codec": fmt,
                    "source": name,
                    "n_frames": n,
                    "size": [images[0].width, images[0].height],
                    "items": items,
                }
                return ImageRecord(images, meta)
    except ImageError as e:
        if e.path is None:
            raise type(e)(str(e), name) from e
        raise
    except UnidentifiedImageError as e:
        if src.head(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return read_tiff_pages(src, options, budget)  # layouts Pillow lacks (float, planar...)
        raise UnsupportedFormatError("not a recognised image format", name) from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e), name) from e
    except FATAL:
        raise
    except BaseException as e:  # corrupt data can raise almost anything inside the codecs
        raise ImageDecodeError(f"cannot decode image ({type(e).__name__}: {e})", name) from e


def _array_to_image(
    arr: np.ndarray, planar: bool, options: ReadOptions, budget: DecodeBudget
) -> tuple[Image.Image, dict]:
    """A TIFF page array -> 8-bit L or RGB image (windowed when not uint8)."""
    a = np.asarray(arr)
    if planar and a.ndim == 3:
        a = np.moveaxis(a, 0, -1)
    while a.ndim > 3:  # leading singleton / depth axes: take the middle
        a = a[a.shape[0] // 2]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] not in (3, 4):
        raise ImageDecodeError(f"unsupported TIFF page shape {a.shape}")
    info: dict = {}
    if a.ndim == 3:
        a = a[..., :3]
    if a.dtype != np.uint8:
        a, info = windowed(a, options, budget)
    h, w = a.shape[:2]
    rgb = a.ndim == 3
    budget.image(w, h, 4 if rgb else 1, "make an 8-bit image")
    im = Image.fromarray(np.ascontiguousarray(a), "RGB" if rgb else "L")
    if options.mode is not None and im.mode != options.mode:
        budget.image(w, h, mode_bytes(options.mode), f"convert to {options.mode}")
        im = im.convert(options.mode)
    return im, info


def page_pixels(page) -> int:
    """Pixels of a TIFF page (width x height x depth), whatever its sample layout."""
    return int(page.imagewidth) * int(page.imagelength) * max(int(page.imagedepth), 1)


def read_tiff_pages(
    src: Source, options: ReadOptions, budget: DecodeBudget | None = None
) -> ImageRecord:
    """TIFF pages through tifffile (float / planar / multi-sample layouts Pillow does not open)."""
    import tifffile

    name = src.name
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, name)
    with decoder_errors(name, "decode TIFF"), src.open() as fp, tifffile.TiffFile(fp) as tif:
        pages = list(tif.pages)
        indices = frame_indices(len(pages), options.frames, default="first")
        total = sum(page_pixels(pages[i]) for i in indices)
        if options.max_pixels and total > options.max_pixels:
            raise ImageTooLargeError(
                f"{total} pixels exceed the pixel limit of {options.max_pixels}", name
            )
        images, items = [], []
        for i in indices:
            page = pages[i]
            planar = page.planarconfig == 2 and page.samplesperpixel > 1
            itemsize = np.dtype(page.dtype).itemsize if page.dtype is not None else 8
            # the page array, plus one decoded segment in flight inside tifffile
            seg = (
                page.tilewidth * page.tilelength
                if page.is_tiled
                else page.imagewidth * (page.rowsperstrip or page.imagelength)
            )
            seg *= max(int(page.samplesperpixel), 1) * max(int(page.tiledepth), 1) * itemsize
            n = budget.array(page.shape, itemsize, f"decode TIFF page {i} {page.shape}")
            with budget.hold(seg, "decode a TIFF tile or strip"):
                arr = page.asarray()
            im, info = _array_to_image(arr, planar, options, budget)
            del arr
            budget.release(n)
            images.append(im)
            items.append({"frame": i, "stored_dtype": str(page.dtype), **info})
        meta = {
            "format": "pillow",
            "codec": "TIFF (tifffile)",
            "source": name,
            "n_frames": len(pages),
            "size": list(images[0].size),
            "items": items,
        }
        return ImageRecord(images, meta)
