"""Decode a path or bytes into an RGB PIL image, with errors that name the input."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from biomedclip.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError

DEFAULT_MAX_PIXELS = 50_000 * 50_000 // 4  # ~625 Mpx; whole slides go through the WSI reader


# 8-bit modes that the eval transform converts to RGB itself (after resize and crop, as the
# reference does); with ``mode=None`` they are returned untouched for exact parity.
TRANSFORM_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1")


def load_image(
    source: str | Path | bytes,
    mode: str | None = "RGB",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open an image file (or bytes), EXIF orientation applied.

    ``mode="RGB"`` (default) converts to RGB. ``mode=None`` keeps 8-bit modes as stored so that
    the model's preprocess sees exactly what the reference pipeline (``Image.open`` + preprocess)
    sees; other modes are still converted to RGB.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            fp = io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageDecodeError("file not found", name)
            if path.stat().st_size == 0:
                raise ImageDecodeError("file is empty (0 bytes)", name)
            fp = path.open("rb")
        with fp:
            with Image.open(fp) as im:
                if max_pixels and im.width * im.height > max_pixels:
                    raise ImageTooLargeError(
                        f"{im.width}x{im.height} exceeds the pixel limit of {max_pixels}", name
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                if mode is None and im.mode in TRANSFORM_MODES:
                    return im.copy()
                return im.convert(mode or "RGB")
    except UnidentifiedImageError as e:
        raise UnsupportedFormatError("not a recognised image format", name) from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e), name) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"cannot decode image ({e})", name) from e
