"""Entry point of the ``biomedclip`` command: one sub-command per module in ``COMMANDS``.

Each module defines ``register(subparsers)``, which adds its parser with
``set_defaults(func=run)``; ``run(args)`` returns the exit code. Heavy imports stay inside ``run`` so
that ``biomedclip --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from biomedclip import __version__
from biomedclip.cli.common import Parser, report_error
from biomedclip.errors import BiomedCLIPError

COMMANDS = (
    "classify",
    "embed",
    "info",
    "convert",
    "export",
    "train",
    "pmc",
    "show",
    "index",
    "search",
    "eval",
    "serve",
    "explain",
    "vqa",
    "slide",
)

DESCRIPTION = """\
BiomedCLIP: zero-shot classification, embedding and search of biomedical images and text
(ViT-B/16 + PubMedBERT, trained on 15M PubMed Central figure-caption pairs).

examples:
  biomedclip classify xray.jpg --labels "chest X-ray, brain MRI, bone X-ray"
  biomedclip embed img1.png img2.png --out emb.npy
  biomedclip info --model ./my-checkpoint
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="biomedclip",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"biomedclip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"biomedclip.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging  # after parsing: --help never needs it

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BiomedCLIPError as e:
        report_error(str(e))
        return 2
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
