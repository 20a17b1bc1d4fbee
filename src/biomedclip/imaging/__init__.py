"""Reading images the way the model expects them.

:func:`read_image` turns a path or bytes (JPEG/PNG/TIFF/..., DICOM, NIfTI, whole-slide images)
into an :class:`ImageRecord` (a list of PIL images plus metadata); :func:`load_image` returns the
one representative image; :func:`open_slide` opens a whole slide for region reads. Every reader
asks one :class:`DecodeBudget` before it allocates (the contract: :mod:`.budget`). Errors are
:class:`biomedclip.errors.ImageError` subclasses.

Names are imported on first use, so ``biomedclip.imaging.constants`` (the option vocabularies the
command-line parsers need) loads without NumPy or Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DEFAULT_MAX_PIXELS": "constants",
    "DecodeBudget": "budget",
    "open_slide": "wsi",
    "PRESETS": "constants",
    "ImageRecord": "options",
    "ReadOptions": "options",
    "Window": "windowing",
    "apply_window": "windowing",
    "parse_window": "windowing",
    "detect_format": "reader",
    "load_image": "reader",
    "read_image": "reader",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodeBudget",
    "PRESETS",
    "ImageRecord",
    "ReadOptions",
    "Window",
    "apply_window",
    "detect_format",
    "load_image",
    "open_slide",
    "parse_window",
    "read_image",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from biomedclip.imaging.budget import DecodeBudget
    from biomedclip.imaging.constants import DEFAULT_MAX_PIXELS, PRESETS
    from biomedclip.imaging.options import ImageRecord, ReadOptions
    from biomedclip.imaging.reader import detect_format, load_image, read_image
    from biomedclip.imaging.windowing import Window, apply_window, parse_window
    from biomedclip.imaging.wsi import open_slide
