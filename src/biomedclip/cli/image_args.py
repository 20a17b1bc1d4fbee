"""Command-line options for medical image inputs, shared by every command that reads images
(``classify``, ``embed``, ``search --image``, ``eval``, ``show``, ``serve``...)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from biomedclip.imaging.constants import PLANES, PRESETS

if TYPE_CHECKING:
    from biomedclip.imaging.options import ReadOptions


def add_image_args(
    parser: argparse.ArgumentParser, slides: bool = True, max_tiles: int = 256
) -> None:
    """``--window --frames --slices --plane --max-pixels`` (+ whole-slide tiling options)."""
    g = parser.add_argument_group("medical images (DICOM, NIfTI, 16-bit TIFF)")
    g.add_argument(
        "--window",
        default=None,
        metavar="PRESET|C,W",
        help=f"intensity window: a CT preset ({', '.join(PRESETS)}) or CENTER,WIDTH in stored "
        "units after rescale (HU for CT); default: the file's VOI LUT / window, else the "
        "0.5-99.5 percentiles",
    )
    g.add_argument(
        "--frames",
        default=None,
        metavar="WHICH",
        help="frames of multi-frame DICOM / multi-page TIFF: middle, first, all or a 0-based "
        "index (default: middle DICOM frame, first TIFF page)",
    )
    g.add_argument(
        "--slices",
        type=int,
        default=1,
        metavar="N",
        help="NIfTI: N evenly spaced slices (default: 1, the middle one)",
    )
    g.add_argument(
        "--plane", choices=PLANES, default="axial", help="NIfTI slice plane (default: axial)"
    )
    g.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse inputs that decode to more than N pixels (decompression-bomb "
        "guard; default ~625M)",
    )
    if not slides:
        return
    s = parser.add_argument_group("whole-slide images (SVS, NDPI, MRXS, pyramidal TIFF, ...)")
    s.add_argument("--tile-size", type=int, default=224, help="tile side in pixels (default: 224)")
    lv = s.add_mutually_exclusive_group()
    lv.add_argument(
        "--level",
        type=int,
        default=None,
        help="pyramid level to tile (default: 0, full resolution)",
    )
    lv.add_argument(
        "--magnification",
        type=float,
        default=None,
        metavar="X",
        help="objective magnification to tile at, e.g. 10 (needs slide metadata)",
    )
    s.add_argument(
        "--tissue-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="keep tiles with at least this tissue fraction (default: 0.5)",
    )
    s.add_argument(
        "--max-tiles",
        type=int,
        default=max_tiles,
        metavar="N",
        help=f"evenly sample at most N tissue tiles per slide (default: {max_tiles})",
    )


def read_options_from_args(
    args: argparse.Namespace, mode: str | None = None, max_tiles: int | None = None
) -> ReadOptions:
    """:class:`ReadOptions` from parsed arguments (raises InputError on bad values).

    ``mode=None`` keeps 8-bit images as stored, as the model's preprocessing expects;
    ``max_tiles`` is the default tile budget of parsers without ``--max-tiles``.
    """
    if not hasattr(args, "window"):  # the parser has no image options: the engine's defaults
        from biomedclip.embedding.encoder import default_read_options

        return default_read_options()
    from biomedclip.imaging.options import ReadOptions

    kw = {"max_tiles": 256 if max_tiles is None else max_tiles}  # the engine's default
    if getattr(args, "max_pixels", None) is not None:
        kw["max_pixels"] = args.max_pixels
    for name in ("tile_size", "level", "magnification", "tissue_fraction", "max_tiles"):
        if hasattr(args, name):
            kw[name] = getattr(args, name)
    return ReadOptions(
        mode=mode,
        window=args.window,
        frames=args.frames,
        slices=args.slices,
        plane=args.plane,
        **kw,
    )


options_from_args = read_options_from_args  # the earlier name
