"""Shared pieces of the CLI: model options, output helpers, error reporting."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from biomedclip.config import DEFAULT_MODEL


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--cache-dir``: how to get the model."""
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id (hf-hub:org/repo, cached after the first download), a model directory, "
        "or a weights file (default: %(default)s)",
    )
    g.add_argument(
        "--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default: cpu)"
    )
    g.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="weights/compute precision (default: fp32, exact)",
    )
    g.add_argument("--cache-dir", default=None, help="hub cache directory (default: HF's cache)")


def load_from_args(args: argparse.Namespace):
    """``(model, preprocess, tokenizer)`` for the model options of ``args``."""
    from biomedclip.factory import load

    model, preprocess, tokenizer = load(
        args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir
    )
    return model, preprocess, tokenizer


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def console():
    """A rich console on stdout."""
    from rich.console import Console

    return Console(highlight=False)


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def report_error(message: str) -> None:
    err_console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
