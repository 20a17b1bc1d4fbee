"""``biomedclip slide ...``: whole-slide pathology at cohort scale.

The analysis commands (``zeroshot``, ``eval``, ``mil``, ``heatmap``) live in
:mod:`biomedclip.cli.slide_analysis`, registered here under the same ``slide`` parser.
"""

from __future__ import annotations

import argparse

HELP = "whole slides: slide-level zero-shot, MIL cross-validation, heatmaps"
DESCRIPTION = """\
Whole-slide pathology at cohort scale (docs/slides.md): per-slide feature files in the CLAM /
TRIDENT layout (DIR/h5_files/<slide_id>.h5), slide-level zero-shot with top-K pooling, attention
MIL cross-validated by patient, and heatmaps over the slide.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from biomedclip.cli import slide_analysis

    p = sub.add_parser(
        "slide", help=HELP, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    slide_sub = p.add_subparsers(dest="slide_command", metavar="SLIDE_COMMAND")
    slide_analysis.register(slide_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
