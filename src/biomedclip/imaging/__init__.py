"""Reading images the way the model expects them.

:func:`read_image` turns a path or bytes (JPEG/PNG/TIFF/..., DICOM, NIfTI, whole-slide images)
into an :class:`ImageRecord` (a list of PIL images plus metadata); :func:`load_image` returns the
one representative image. Errors are :class:`biomedclip.errors.ImageError` subclasses.
"""

from biomedclip.imaging.options import DEFAULT_MAX_PIXELS, ImageRecord, ReadOptions
from biomedclip.imaging.reader import detect_format, load_image, read_image
from biomedclip.imaging.windowing import PRESETS, Window, apply_window, parse_window

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PRESETS",
    "ImageRecord",
    "ReadOptions",
    "Window",
    "apply_window",
    "detect_format",
    "load_image",
    "parse_window",
    "read_image",
]
