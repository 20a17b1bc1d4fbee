"""Helpers for the imaging tests: real files from pydicom / skimage, pyramidal TIFF writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def dicom_file(name: str) -> Path:
    """A DICOM file bundled with pydicom (or pydicom-data when installed; skip otherwise)."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except TypeError:  # older pydicom without the download argument
        path = get_testdata_file(name)
    except Exception:
        path = None
    if path is None:
        pytest.skip(f"{name} is not available offline (install pydicom-data)")
    return Path(path)


def skimage_file(name: str) -> Path:
    import skimage.data

    path = Path(os.path.dirname(skimage.data.__file__)) / name
    if not path.is_file():
        pytest.skip(f"skimage does not ship {name}")
    return path


def write_pyramid(
    path: Path,
    base: np.ndarray,
    levels: int = 3,
    tile: int = 256,
    aperio: bool = True,
    compression: str | None = "zlib",
) -> list[np.ndarray]:
    """A real pyramidal tiled TIFF (Aperio-style description when ``aperio``); returns levels."""
    import tifffile

    pyramid = [base]
    for _ in range(levels - 1):
        prev = pyramid[-1]
        h, w = prev.shape[0] // 2, prev.shape[1] // 2
        pyramid.append(np.asarray(Image.fromarray(prev).resize((w, h), Image.Resampling.BOX)))
    h0, w0 = base.shape[:2]
    desc = (
        (
            f"Aperio Image Library v10.0.50\r\n{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile}) "
            "|AppMag = 20|MPP = 0.5"
        )
        if aperio
        else None
    )
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(pyramid):
            tw.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                description=desc if i == 0 else None,
                metadata=None,
                subfiletype=0 if i == 0 else 1,
            )
    return pyramid


TISSUE_BOX = (512, 256, 1536, 1280)  # x0, y0, x1, y1 of the tissue block at level 0


def save_rotated_jpeg(image: Image.Image, path: Path, quality: int = 75) -> Path:
    """Save ``image`` as a JPEG whose EXIF orientation (6) says: rotate 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes(), quality=quality)
    return path
