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
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.source import FATAL, Source, decoder_errors
from biomedclip.imaging.windowing import apply_window, percentile_window, to_uint8

# 8-bit modes that the eval transform converts to RGB itself (after resize and crop, as the
# reference does); with ``mode=None`` they are returned untouched for exact parity.
TRANSFORM_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def frame_indices(n: int, frames: str | int | None, default: str) -> list[int]:
    """Which of ``n`` frames to decode for the ``frames`` option."""
    choice = default if frames is None else frames
    if choice == "all":
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


def to_display(im: Image.Image, options: ReadOptions) -> tuple[Image.Image, dict]:
    """One decoded frame -> an 8-bit image following ``options`` (+ what was done)."""
    info: dict = {"stored_mode": im.mode}
    if im.mode in HIGH_DEPTH_MODES or im.mode.startswith("I;16"):
        arr = np.asarray(im)
        if arr.ndim != 2:
            arr = np.asarray(im.convert("I"))
        window = options.window_obj or percentile_window(arr, *options.percentiles)
        info["window"] = window.as_dict()
        im = Image.fromarray(to_uint8(apply_window(arr, window)), mode="L")
    elif options.background is not None and (im.mode in ALPHA_MODES or "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*options.background, 255))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
        info["background"] = list(options.background)
    if options.mode is None and im.mode in TRANSFORM_MODES:
        return im, info
    return im.convert(options.mode or "RGB"), info


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


def read_pillow(src: Source, options: ReadOptions) -> ImageRecord:
    name = src.name
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
                    im.load()
                    frame = ImageOps.exif_transpose(im)
                    out, info = to_display(frame, options)
                    images.append(out if out is not im else im.copy())
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
            return read_tiff_pages(src, options)  # TIFF layouts Pillow lacks (float, planar, ...)
        raise UnsupportedFormatError("not a recognised image format", name) from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e), name) from e
    except FATAL:
        raise
    except BaseException as e:  # corrupt data can raise almost anything inside the codecs
        raise ImageDecodeError(f"cannot decode image ({type(e).__name__}: {e})", name) from e


def _array_to_image(
    arr: np.ndarray, planar: bool, options: ReadOptions
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
        window = options.window_obj or percentile_window(a, *options.percentiles)
        info["window"] = window.as_dict()
        a = to_uint8(apply_window(a, window))
    im = Image.fromarray(np.ascontiguousarray(a), "RGB" if a.ndim == 3 else "L")
    if options.mode is not None and im.mode != options.mode:
        im = im.convert(options.mode)
    return im, info


def read_tiff_pages(src: Source, options: ReadOptions) -> ImageRecord:
    """TIFF pages through tifffile (float / planar / multi-sample layouts Pillow does not open)."""
    import tifffile

    name = src.name
    with decoder_errors(name, "decode TIFF"), src.open() as fp, tifffile.TiffFile(fp) as tif:
        pages = list(tif.pages)
        indices = frame_indices(len(pages), options.frames, default="first")
        total = sum(
            int(np.prod(pages[i].shape[:-1] if pages[i].ndim > 2 else pages[i].shape))
            for i in indices
        )
        if options.max_pixels and total > options.max_pixels:
            raise ImageTooLargeError(
                f"{total} pixels exceed the pixel limit of {options.max_pixels}", name
            )
        images, items = [], []
        for i in indices:
            page = pages[i]
            planar = page.planarconfig == 2 and page.samplesperpixel > 1
            im, info = _array_to_image(page.asarray(), planar, options)
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
