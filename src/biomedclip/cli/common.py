"""Shared pieces of the CLI: model options, output helpers, error reporting."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from biomedclip.config import DEFAULT_MODEL

PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # as biomedclip.embedding.encoder (import-light)
BACKENDS = ("torch", "onnx-int8", "openvino", "auto")

#: The encoding engine's options, by name; a command declares the ones it honours.
SPEED_OPTIONS = (
    "precision",
    "backend",
    "batch-size",
    "text-batch-size",
    "workers",
    "fast-decode",
    "compile",
)
#: What a command that only loads and runs the model once (no batches, no decoding) honours.
NO_SPEED: tuple[str, ...] = ()


class Parser(argparse.ArgumentParser):
    """The parser of every ``biomedclip`` command: abbreviations are off.

    ``--text`` is never read as ``--text-batch-size``, and adding a flag cannot change the meaning
    of a prefix a user already typed. Sub-parsers inherit the class (``add_subparsers`` uses
    ``type(self)``), so the rule holds for ``eval zeroshot``, ``index build`` and the rest.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """As argparse, but a command (a parser without sub-commands) refuses what it does not
        know itself, with its own usage and the spellings it does know."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None and self.prog != "biomedclip":
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._hint(extras)}")
        return namespace, extras

    def _hint(self, extras: list[str]) -> str:
        """``did you mean --text-batch-size?`` for each unknown ``--flag``."""
        import difflib

        known = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for token in extras:
            if not token.startswith("--"):
                continue
            flag = token.split("=", 1)[0]
            close = [o for o in known if o.startswith(flag)]
            close = close or difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
            if close:
                hints.append(f"{flag}: did you mean {' or '.join(sorted(close))}?")
        if not hints:
            return ""
        return " (options are never abbreviated; " + "; ".join(hints) + ")"


def _add_once(group, *flags: str, **kwargs) -> None:
    """Add an option unless the command already defines it (its own default wins)."""
    known = group._option_string_actions  # shared by a parser and its groups
    if not any(f in known for f in flags):
        group.add_argument(*flags, **kwargs)


def add_model_args(
    parser: argparse.ArgumentParser,
    batch_size: int = 64,
    speed: tuple[str, ...] = SPEED_OPTIONS,
) -> None:
    """How to get and run the model, the same in every command.

    ``--model --device --cache-dir`` (the hub cache), and of the encoding engine's options
    (:data:`SPEED_OPTIONS`) the ones named in ``speed``, i.e. the ones the command honours:
    ``--precision`` (fp32 exact; bf16/fp16 autocast, weights stay fp32), ``--backend``,
    ``--batch-size``, ``--text-batch-size``, ``--workers``, ``--fast-decode``, ``--compile``.
    """
    unknown = set(speed) - set(SPEED_OPTIONS)
    if unknown:
        raise ValueError(f"unknown speed options {sorted(unknown)}; known: {SPEED_OPTIONS}")
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
    g.add_argument("--cache-dir", default=None, help="hub cache directory (default: HF's cache)")
    if not speed:
        return
    s = parser.add_argument_group("speed (the encoding engine; the same in every command)")
    if "precision" in speed:
        _add_once(
            s,
            "--precision",
            "--dtype",
            dest="precision",
            default="fp32",
            choices=list(PRECISIONS),
            help="fp32 (default, exact), or bf16 / fp16 under autocast with fp32 weights: bf16 on "
            "CPUs with AVX512-BF16/AMX and on GPUs, fp16 on CUDA (cosine >= 0.999 to fp32); "
            "with --backend openvino: fp32, bf16 (native-bf16 CPUs only) or int8 (NNCF). "
            "--dtype is the same option",
        )
    if "backend" in speed:
        _add_once(
            s,
            "--backend",
            choices=list(BACKENDS),
            default="torch",
            help="torch (default); onnx-int8: the image tower through ONNX Runtime with int8 "
            "weights; openvino: both towers through OpenVINO at --precision fp32|bf16|int8 "
            "(needs biomedclip[cpu-fast]); auto: the fastest of these for this CPU within cosine "
            "0.999 of fp32, measured once per model and CPU (docs/cpu.md). Converted models "
            "are cached ($BIOMEDCLIP_CACHE)",
        )
        _add_once(
            s,
            "--calibration",
            default=None,
            metavar="DIR",
            help="real images (and *.txt captions) that OpenVINO int8 and --backend auto "
            "calibrate and measure on the first time (default: $BIOMEDCLIP_CALIBRATION, else the "
            "job's first images where it reads image files)",
        )
    if "batch-size" in speed:
        _add_once(
            s,
            "--batch-size",
            type=int,
            default=batch_size,
            help=f"images per forward pass (default: {batch_size})",
        )
    if "text-batch-size" in speed:
        _add_once(
            s,
            "--text-batch-size",
            type=int,
            default=256,
            help="texts per forward pass, after sorting by length (default: 256)",
        )
    if "workers" in speed:
        _add_once(
            s,
            "--workers",
            type=int,
            default=None,
            help="image decoding processes (default: cores - 1, at most 8; none on <= 2 cores)",
        )
    if "fast-decode" in speed:
        _add_once(
            s,
            "--fast-decode",
            action="store_true",
            help="decode large JPEGs at a reduced DCT scale (sides >= twice the model's input) "
            "before the exact resize: faster, embeddings within cosine 0.999 of the exact path",
        )
    if "compile" in speed:
        _add_once(s, "--compile", action="store_true", help="torch.compile the towers (GPU)")


def load_from_args(args: argparse.Namespace):
    """``(model, preprocess, tokenizer)`` for the model options of ``args``; weights in fp32
    (``--precision`` is applied by the encoder, as autocast)."""
    from biomedclip.factory import load

    return load(args.model, device=args.device, cache_dir=args.cache_dir)


def settings_from_args(args: argparse.Namespace, max_tiles: int | None = None):
    """:class:`~biomedclip.embedding.EncoderSettings` from the model, speed and image options."""
    from biomedclip.cli.image_args import read_options_from_args
    from biomedclip.embedding.encoder import EncoderSettings

    return EncoderSettings(
        precision=getattr(args, "precision", "fp32"),
        compile=getattr(args, "compile", False),
        backend=getattr(args, "backend", "torch"),
        batch_size=getattr(args, "batch_size", 64),
        text_batch_size=getattr(args, "text_batch_size", 256),
        num_workers=getattr(args, "workers", None),
        read=read_options_from_args(args, max_tiles=max_tiles),
        fast_decode=getattr(args, "fast_decode", False),
        calibration=getattr(args, "calibration", None),
    )


def encoder_from_args(
    args: argparse.Namespace, model, preprocess=None, tokenizer=None, job_images=()
):
    """The :class:`~biomedclip.embedding.Encoder` that a command's options describe
    (``job_images``: the command's image files, a calibration set of last resort)."""
    from biomedclip.embedding.encoder import Encoder

    settings = settings_from_args(args)
    if settings.needs_calibration and settings.calibration is None and job_images:
        import dataclasses
        import os

        from biomedclip.embedding.calibration import ENV, resolve_calibration

        files = [str(p) for p in job_images if os.path.isfile(str(p))]
        if files and not os.environ.get(ENV):
            cal = resolve_calibration(None, job_images=files)
            settings = dataclasses.replace(settings, calibration=cal)
    return Encoder(model, preprocess, tokenizer, settings)


def backend_provenance(encoder) -> dict | None:
    """What ran (``Encoder.provenance``), for a command's JSON output; None for other encoders."""
    fn = getattr(encoder, "provenance", None)
    return fn() if callable(fn) else None


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
