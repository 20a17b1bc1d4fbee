"""Reading images the way the model expects them (see :func:`load_image`)."""

from biomedclip.imaging.reader import load_image

__all__ = ["load_image"]
