"""One entry point from a path or bytes to image(s): :func:`read_image` and :func:`load_image`.

Dispatch is by content (magic bytes), not by extension: DICOM -> :mod:`.dicom`, NIfTI ->
:mod:`.nifti`, pyramidal / vendor TIFF and other OpenSlide formats -> :mod:`.wsi`, everything else
-> :mod:`.pillow`. All failures are :class:`biomedclip.errors.ImageError` subclasses naming the
input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image

from biomedclip.errors import ImageDecodeError, ImageError
from biomedclip.imaging.budget import DecodeBudget
from biomedclip.imaging.options import DEFAULT_MAX_PIXELS, ImageRecord, ReadOptions
from biomedclip.imaging.pillow import TRANSFORM_MODES  # noqa: F401  (re-exported)
from biomedclip.imaging.source import FATAL, Source, sniff

# A tiled TIFF is read as a whole slide when it is pyramidal or at least this large.
WSI_MIN_PIXELS = 10_000 * 10_000


def _tiff_is_slide(src: Source) -> bool:
    """Whether a TIFF should go to the whole-slide reader rather than Pillow."""
    from biomedclip.imaging.wsi import WSI_VENDORS, openslide_vendor

    vendor = openslide_vendor(src.path) if src.path is not None else None
    if vendor in WSI_VENDORS:
        return True
    import tifffile

    try:
        with src.open() as fp, tifffile.TiffFile(fp) as tif:
            pages = tif.pages
            first = pages.first
            if not first.is_tiled:
                return False
            if (first.description or "").startswith("Aperio"):
                return True
            if first.imagewidth * first.imagelength >= WSI_MIN_PIXELS:
                return True
            n_tiled = 0
            for p in pages[:16]:
                n_tiled += bool(getattr(p, "is_tiled", False))
            return (
                n_tiled > 1
                and all(getattr(p, "imagewidth", 0) <= first.imagewidth for p in pages[:16])
                and len({getattr(p, "imagewidth", 0) for p in pages[:16]}) > 1
            )
    except FATAL:
        raise
    except BaseException:
        return False  # not a readable TIFF: Pillow will give the precise error


def detect_format(source: str | Path | bytes) -> str | None:
    """The reader :func:`read_image` would use: ``pillow``, ``dicom``, ``nifti``, ``wsi``, None."""
    src = Source.of(source)
    kind = sniff(src)
    if kind == "tiff":
        return "wsi" if _tiff_is_slide(src) else "pillow"
    return kind


def read_image(
    source: str | Path | bytes,
    options: ReadOptions | None = None,
    *,
    budget: DecodeBudget | None = None,
    **overrides,
) -> ImageRecord:
    """Decode ``source`` into an :class:`ImageRecord` (images + metadata).

    ``options`` (or keyword overrides of :class:`ReadOptions` fields) choose windowing, frames,
    slices and tiling. Every allocation is asked of ``budget`` first (default: the budget of
    ``options.max_pixels``, see :mod:`biomedclip.imaging.budget`). Raises
    :class:`~biomedclip.errors.ImageError` subclasses on bad input (``ImageTooLargeError`` when
    the budget refuses).
    """
    options = options or ReadOptions()
    if overrides:
        options = replace(options, **overrides)
    src = Source.of(source)
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, src.name)
    kind = options.format or sniff(src)
    if kind == "tiff":
        kind = "wsi" if _tiff_is_slide(src) else "pillow"
    try:
        if kind == "dicom":
            from biomedclip.imaging.dicom import read_dicom

            force = src.head(132)[128:132] != b"DICM"
            return read_dicom(src, options, force=force, budget=budget)
        if kind == "nifti":
            from biomedclip.imaging.nifti import read_nifti

            return read_nifti(src, options, budget)
        if kind == "wsi":
            from biomedclip.imaging.wsi import read_wsi

            return read_wsi(src, options, budget)
        from biomedclip.imaging.pillow import read_pillow

        return read_pillow(src, options, budget)
    except ImageError:
        raise
    except FATAL:
        raise
    except BaseException as e:  # a reader bug must still name the input, never crash a batch
        raise ImageDecodeError(f"cannot read image ({type(e).__name__}: {e})", src.name) from e


def load_image(
    source: str | Path | bytes,
    mode: str | None = "RGB",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open one image (path or bytes) the way the model expects it; EXIF orientation applied.

    ``mode="RGB"`` (default) converts to RGB. ``mode=None`` keeps 8-bit modes as stored so that
    the model's preprocess sees exactly what the reference pipeline (``Image.open`` + preprocess)
    sees; other modes are converted (16-bit and float images by percentile windowing).
    DICOM gives the middle frame with the file's window, NIfTI the middle axial slice, a
    whole-slide image a thumbnail; use :func:`read_image` for frames, slices, windows and tiles.
    """
    options = ReadOptions(mode=mode, max_pixels=max_pixels, wsi="thumbnail")
    return read_image(source, options).images[0]
