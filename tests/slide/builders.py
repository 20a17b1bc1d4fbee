"""Real pyramidal slides for the slide tests, written with tifffile.

A slide is a grid of ``grid = (nx, ny)`` cells of ``patch_px`` level-0 pixels on a white glass
background (RGB ~245 with a little noise). ``tiles`` put real tissue patches in cells, ``pen``
fills cells with pen ink (blue, green, black), every other cell stays glass. The file is a tiled,
zlib-compressed (level 1), multi-level TIFF (each level ``level_factor`` times smaller
than the one above, ``subfiletype`` 1 for the reduced levels) that OpenSlide (``generic-tiff``) and the tifffile
backend both read; ``mpp`` writes the resolution tags (pixels per centimetre), ``mpp=None``
writes none (a slide with no resolution).

    from tests.slide.builders import build_slide, lc25000

    tumour, normal = lc25000("lung_aca", 6), lc25000("lung_n", 6)
    spec = build_slide(
        tmp / "s.tif",
        tiles=[(im, 1 + i % 3, 1 + i // 3) for i, im in enumerate(tumour)],
        grid=(8, 6), patch_px=224, mpp=0.5, levels=3,
        pen=[("blue", 6, 1), ("green", 6, 2), ("black", 6, 3)],
    )
    spec.path, spec.levels            # the file; (width, height) of every level
    spec.kind[(1, 1)] == "tissue"      # what a cell holds: tissue / pen / glass
    spec.box((1, 1))                   # its level-0 (x0, y0, x1, y1)
    spec.cells("tissue")               # the sorted cells of a kind
    spec.kinds_under(x, y, size)       # the kinds a level-0 square touches ("outside" beyond)

``build_slide(path, tiles, grid=(8, 6), patch_px=224, mpp=0.5, levels=3, pen=True,
level_factor=2, tile=256, seed=0, compression="zlib")``: ``tiles`` are (PIL image, gx, gy), each
resized to ``patch_px``; ``pen`` a list of (colour, gx, gy), True for one cell of each colour in
the last column, False for none; ``level_factor=4`` gives an Aperio-like pyramid (downsamples 1,
4, 16) where a 20x target on a 40x slide is read at level 0 and resized.

The implementation lives in ``benchmarks/_slides.py`` (the benchmarks may not import the test
suite); ``lc25000(cls, n, start=0)`` gives ``n`` real LC25000 lung patches (``lung_aca`` tumour,
``lung_n`` normal, ``lung_scc``) from ../shared/data as RGB PIL images, in file-name order
(skips the test when the data is absent). ``truncate(path, keep)`` cuts a file to a fraction
of its bytes (a corrupt slide).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks._slides import PEN_INK, SlideSpec, build_slide, truncate
from benchmarks._slides import lc25000 as _lc25000
from PIL import Image

from tests.conftest import shared_path

__all__ = ["PEN_INK", "SlideSpec", "build_slide", "lc25000", "truncate"]


def lc25000(cls: str, n: int, start: int = 0) -> list[Image.Image]:
    """``n`` real LC25000 patches of class ``cls`` (``lung_aca``, ``lung_n``, ``lung_scc``) from
    ../shared/data, in file-name order; skips the test when the data is absent."""
    root: Path = shared_path("lc25000_lung").parent
    return _lc25000(root, cls, n, start)
