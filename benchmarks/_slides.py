"""Real pyramidal test slides written with tifffile, for the slide benchmarks and tests
(tests/slide/builders.py re-exports this module and documents its API).

A slide is a grid of ``grid = (nx, ny)`` cells of ``patch_px`` level-0 pixels on white glass
(RGB ~245 with a little noise); ``tiles`` put real tissue patches in cells, ``pen`` fills cells
with pen ink (blue, green, black). Tiled, zlib (level 1), several levels, resolution tags: read by
OpenSlide (generic-tiff) and by the tifffile backend.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PEN_INK = {"blue": (38, 64, 178), "green": (36, 142, 62), "black": (34, 33, 38)}
GLASS = 245


@dataclass
class SlideSpec:
    """What was written: the path, the grid, and what each cell holds."""

    path: Path
    grid: tuple[int, int]
    patch_px: int
    mpp: float | None
    levels: list[tuple[int, int]]  # (width, height) per level
    kind: dict[tuple[int, int], str] = field(default_factory=dict)  # tissue / pen / glass
    label: dict[tuple[int, int], str] = field(default_factory=dict)  # the tissue's class

    def box(self, cell: tuple[int, int]) -> tuple[int, int, int, int]:
        """Level-0 ``(x0, y0, x1, y1)`` of a cell."""
        gx, gy = cell
        p = self.patch_px
        return gx * p, gy * p, (gx + 1) * p, (gy + 1) * p

    def cells(self, kind: str) -> list[tuple[int, int]]:
        return sorted(c for c, k in self.kind.items() if k == kind)

    def kinds_under(self, x: int, y: int, size: int) -> set[str]:
        """The kinds of every cell a level-0 square at ``(x, y)`` of side ``size`` touches."""
        p = self.patch_px
        out = set()
        for gy in range(y // p, (y + size - 1) // p + 1):
            for gx in range(x // p, (x + size - 1) // p + 1):
                out.add(self.kind.get((gx, gy), "outside"))
        return out


@functools.lru_cache(maxsize=8)
def lc25000_files(root: Path, cls: str) -> tuple[Path, ...]:
    """The LC25000 lung files of class ``cls`` under ``root`` (../shared/data), sorted."""
    folder = Path(root) / "lc25000_lung" / cls
    if not folder.is_dir():
        raise FileNotFoundError(f"LC25000 lung patches not found: {folder}")
    return tuple(sorted(folder.glob("*.jpeg")))


def lc25000(root: Path, cls: str, n: int, start: int = 0) -> list[Image.Image]:
    """``n`` real LC25000 patches of class ``cls`` (``lung_aca``, ``lung_n``, ``lung_scc``)."""
    files = lc25000_files(Path(root), cls)[start : start + n]
    if len(files) < n:
        raise FileNotFoundError(f"only {len(files)} {cls} patches from #{start} under {root}")
    return [Image.open(f).convert("RGB") for f in files]


def _pyramid(base: np.ndarray, levels: int, factor: int) -> list[np.ndarray]:
    out = [base]
    for _ in range(levels - 1):
        prev = out[-1]
        h, w = prev.shape[0] // factor, prev.shape[1] // factor
        if min(h, w) < 16:
            break
        out.append(np.asarray(Image.fromarray(prev).resize((w, h), Image.Resampling.BOX)))
    return out


def build_slide(
    path: str | Path,
    tiles: list[tuple[Image.Image, int, int]],
    grid: tuple[int, int] = (8, 6),
    patch_px: int = 224,
    mpp: float | None = 0.5,
    levels: int = 3,
    pen: list[tuple[str, int, int]] | bool = True,
    level_factor: int = 2,
    tile: int = 256,
    seed: int = 0,
    compression: str | None = "zlib",
) -> SlideSpec:
    """Write a pyramidal TIFF slide (see the module docstring) and return its :class:`SlideSpec`.

    ``tiles``: (image, gx, gy), each image resized to ``patch_px`` and put in cell (gx, gy).
    ``pen``: (colour, gx, gy) cells filled with ink; ``True`` puts one of each colour in the
    rightmost column (rows 1-3, wrapping), ``False`` none. ``compression``: ``"zlib"`` (level 1, fast) or
    ``None``.
    """
    import tifffile

    path = Path(path)
    nx, ny = grid
    rng = np.random.default_rng(seed)
    base = np.full((ny * patch_px, nx * patch_px, 3), GLASS, np.int16)
    base += rng.integers(-3, 4, size=base.shape, dtype=np.int16)
    base = base.clip(0, 255).astype(np.uint8)
    spec = SlideSpec(path, grid, patch_px, mpp, [])
    for gx in range(nx):
        for gy in range(ny):
            spec.kind[(gx, gy)] = "glass"
    for im, gx, gy in tiles:
        x0, y0, x1, y1 = spec.box((gx, gy))
        im = im.convert("RGB")
        if im.size != (patch_px, patch_px):
            im = im.resize((patch_px, patch_px), Image.Resampling.BICUBIC)
        base[y0:y1, x0:x1] = np.asarray(im)
        spec.kind[(gx, gy)] = "tissue"
        spec.label[(gx, gy)] = getattr(im, "label", "") or ""
    if pen is True:
        pen = [(c, nx - 1, (1 + i) % ny) for i, c in enumerate(PEN_INK)]
    for colour, gx, gy in pen or []:
        x0, y0, x1, y1 = spec.box((gx, gy))
        ink = np.array(PEN_INK[colour], np.int16)
        block = ink + rng.integers(-6, 7, size=(y1 - y0, x1 - x0, 3), dtype=np.int16)
        base[y0:y1, x0:x1] = block.clip(0, 255).astype(np.uint8)
        spec.kind[(gx, gy)] = "pen"
    pyramid = _pyramid(base, levels, level_factor)
    spec.levels = [(a.shape[1], a.shape[0]) for a in pyramid]
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(pyramid):
            kwargs = {}
            if mpp is not None:
                per_cm = 10_000.0 / (mpp * level_factor**i)
                kwargs = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            tw.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                compressionargs={"level": 1} if compression == "zlib" else None,
                metadata=None,
                subfiletype=0 if i == 0 else 1,
                **kwargs,
            )
    return spec


def truncate(path: str | Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to ``keep`` of its bytes (a slide whose copy was interrupted)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
