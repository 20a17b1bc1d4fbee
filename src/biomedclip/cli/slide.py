"""``biomedclip slide``: whole slides at cohort scale. One sub-command per module in
``SUBCOMMANDS`` (each defines ``register(subparsers)``)."""

from __future__ import annotations

import argparse
import importlib

HELP = "whole-slide pathology: tissue patches, per-slide feature files (CLAM/TRIDENT layout)"
DESCRIPTION = """\
Whole slides (SVS, NDPI, MRXS, pyramidal TIFF, ...) at cohort scale.

  slide patch SLIDE --preview grid.png       tissue patch grid at 20x (0.5 um/px) on the thumbnail
  slide features SLIDES... --out DIR         DIR/h5_files/<slide_id>.h5 per slide (features, coords)
"""

SUBCOMMANDS = ("biomedclip.cli.slide_extract",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "slide",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = p.add_subparsers(dest="slide_command", metavar="SUBCOMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(cmds)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
