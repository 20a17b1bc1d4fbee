"""``biomedclip explain``: heatmaps of where a text matches an image (PNG overlay + NumPy grid)."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import NO_SPEED, add_json_flag, add_model_args, console, print_json

HELP = "heatmap of where a text matches an image (patch similarity, Grad-CAM)"
DESCRIPTION = """\
Explain the image-text similarity of IMAGE with each --text as a heatmap over the ViT's patch grid
(14 x 14 for the released model), blended over the square centre crop the model sees.

methods:
  patch-similarity  every patch token through the image projection, cosine with the text embedding
  grad-cam          Grad-CAM on the last ViT block for the image-text cosine similarity

With one text and one method the overlay goes to --out; otherwise each map goes to
OUT_STEM.<method>.<n>.png (n = text number). --grid also writes the raw grid(s) as .npy next to
each PNG. Inputs: JPEG/PNG/TIFF, DICOM (file window), NIfTI (middle slice), 16-bit images.
Research use only: heatmaps are not clinical evidence.

examples:
  biomedclip explain xray.jpg --text "left-sided pleural effusion" --out heat.png
  biomedclip explain slide_tile.png --text "adenocarcinoma" --text "squamous cell carcinoma" \\
      --method grad-cam --out tile.png --grid --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="an image file (JPEG/PNG/TIFF, DICOM, NIfTI)")
    p.add_argument(
        "--text", action="append", required=True, help="a text to explain; repeat for several"
    )
    p.add_argument(
        "--method",
        action="append",
        choices=["patch-similarity", "grad-cam"],
        default=None,
        help="explanation method; repeat for both (default: patch-similarity)",
    )
    p.add_argument("--out", default="heat.png", help="output PNG (default: %(default)s)")
    p.add_argument("--grid", action="store_true", help="also write the raw patch grid(s) as .npy")
    p.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity (default: 0.45)")
    add_json_flag(p)
    add_model_args(p, speed=NO_SPEED)
    p.set_defaults(func=run)


def output_paths(out: Path, methods: list[str], n_texts: int) -> list[Path]:
    """One PNG path per (method, text), methods outermost."""
    if len(methods) == 1 and n_texts == 1:
        return [out]
    return [out.with_name(f"{out.stem}.{m}.{i}.png") for m in methods for i in range(n_texts)]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from biomedclip.cli.common import load_from_args
    from biomedclip.errors import InputError
    from biomedclip.explain import Explainer, overlay, save_png
    from biomedclip.explain.maps import check_methods
    from biomedclip.io_utils import atomic_open

    methods = check_methods(args.method or ["patch-similarity"])
    if not 0.0 <= args.alpha <= 1.0:
        raise InputError(f"--alpha {args.alpha}: use a value within [0, 1]")
    if not Path(args.image).is_file():
        raise InputError(f"{args.image}: no such file")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out}: the overlay is written as PNG (use a .png name)")
    model, preprocess, tokenizer = load_from_args(args)
    explanations = Explainer(model, preprocess, tokenizer).explain(args.image, args.text, methods)
    rows = []
    for ex, path in zip(explanations, output_paths(out, methods, len(args.text))):
        save_png(overlay(ex.view, ex.grid, alpha=args.alpha), path)
        row = {"text": ex.text, "method": ex.method, "score": ex.score, "png": str(path)}
        if args.grid:
            npy = path.with_suffix(".npy")
            with atomic_open(npy, "wb") as f:
                np.save(f, ex.grid)
            row["grid"] = str(npy)
        peak = np.unravel_index(int(np.argmax(ex.grid)), ex.grid.shape)
        row["grid_shape"], row["peak"] = list(ex.grid.shape), [int(v) for v in peak]
        rows.append(row)
    if args.json:
        print_json({"image": args.image, "explanations": rows})
        return 0
    c = console()
    for r in rows:
        c.print(
            f"{r['method']:<16} cos={r['score']:+.3f}  peak (row, col)={tuple(r['peak'])}  "
            f"{r['text']!r} -> {r['png']}" + (f" + {r['grid']}" if "grid" in r else "")
        )
    return 0
