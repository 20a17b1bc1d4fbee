"""Fixtures for the imaging tests: a real pyramidal slide built from skimage's IHC image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.imaging.helpers import TISSUE_BOX, skimage_file, write_pyramid


@pytest.fixture(scope="session")
def slide_levels(tmp_path_factory):
    """(path, levels): a 2048x1536 slide, white glass with a 1024x1024 block of real IHC tissue."""
    ihc = np.asarray(Image.open(skimage_file("ihc.png")).convert("RGB"))
    block = np.tile(ihc, (2, 2, 1))  # 1024 x 1024 of real stained tissue
    base = np.full((1536, 2048, 3), 244, np.uint8)
    x0, y0, x1, y1 = TISSUE_BOX
    base[y0:y1, x0:x1] = block
    path = tmp_path_factory.mktemp("slide") / "slide.svs"
    levels = write_pyramid(path, base)
    return path, levels
