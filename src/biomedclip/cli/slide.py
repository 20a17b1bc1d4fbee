"""``biomedclip slide``: whole slides at cohort scale. One sub-command per module in
``SUBCOMMANDS`` (each defines ``register(subparsers)``)."""

from __future__ import annotations

import argparse
import importlib

HELP = "whole slides: tissue patches, feature files, slide zero-shot, MIL, heatmaps"
DESCRIPTION = """\
Whole slides (SVS, NDPI, MRXS, pyramidal TIFF, ...) at cohort scale.

  slide patch SLIDE --preview grid.png       tissue patch grid at 20x (0.5 um/px) on the thumbnail
  slide features SLIDES... --out DIR         DIR/h5_files/<slide_id>.h5 per slide (features, coords)
  slide zeroshot DIR --labels "a, b"         slide-level zero-shot, top-K pooling, top patches
  slide eval --cohort CSV --features DIR     cohort table with bootstrap CIs (--mil RUN: + MIL CV)
  slide mil --cohort CSV --features DIR      ABMIL + mean-pool LR, patient-grouped CV, resumable
  slide heatmap SLIDE --text "tumor"         patch scores over the thumbnail (--mil: attention)
"""

SUBCOMMANDS = ("biomedclip.cli.slide_extract", "biomedclip.cli.slide_analysis")


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
