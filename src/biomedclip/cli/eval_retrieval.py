"""``biomedclip eval retrieval``: image<->text Recall@K on image-caption pairs."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json

DESCRIPTION = """\
Cross-modal retrieval on image-caption pairs: every image is a query over all captions
(image->text) and every caption over all images (text->image); the match of pair i is item i.
Reports Recall@1/5/10, mean and median rank (1-based), the paper's and open_clip's metrics,
computed exactly (no approximate search) in blocks, so 100k pairs are fine. Both sides go
through the encoding engine (--precision, --backend).

PAIRS: a CSV with columns image,caption (image paths relative to the CSV; optional id), or a MedICaT
.jsonl (images in figures/ beside it, or --figures). Unreadable images are listed and left
out; the exit code is then 1. --out writes the same report files as the other protocols.

examples:
  biomedclip eval retrieval pairs.csv
  biomedclip eval retrieval medicat/sample.jsonl --json
  biomedclip eval retrieval pairs.csv --model ./finetuned --ranks-out ranks.json --out report/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrieval",
        help="image<->text retrieval metrics on image-caption pairs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pairs", metavar="PAIRS", help="PAIRS.csv (image,caption) or MedICaT .jsonl")
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="MedICaT: folder of the figure files (default: figures/ beside the .jsonl)")  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate the first N pairs"
    )
    p.add_argument("--ranks-out", default=None, metavar="FILE",
                   help="also write every pair's ranks (JSON) for error analysis")  # fmt: skip
    p.add_argument(
        "--out", default=None, metavar="DIR", help="write results.json/.csv and report.md"
    )
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biomedclip.cli.common import backend_provenance, encoder_from_args, load_from_args
    from biomedclip.errors import InputError
    from biomedclip.eval.pairs import read_pairs
    from biomedclip.eval.report import write_report
    from biomedclip.eval.retrieval_eval import evaluate_retrieval
    from biomedclip.io_utils import atomic_write_json

    pairs = read_pairs(args.pairs, args.figures)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        pairs = pairs[: args.limit]
    model, preprocess, tokenizer = load_from_args(args)
    encoder = encoder_from_args(args, model, preprocess, tokenizer)
    encoder.progress = not args.json
    report = evaluate_retrieval(encoder, pairs)
    if args.ranks_out:
        atomic_write_json(args.ranks_out, report.to_dict(with_ranks=True))
    provenance = backend_provenance(encoder)
    if args.out:
        res = report.to_result(Path(args.pairs).stem, str(args.model))
        res.settings = {**res.settings, "backend": provenance}
        write_report([res], args.out, plots=False)
    result = {"pairs_file": str(args.pairs), "model": args.model, **report.to_dict()}
    result["backend"] = provenance
    if args.json:
        print_json(result)
    else:
        _print_report(report, args)
    return 1 if report.skipped else 0


def _print_report(report, args: argparse.Namespace) -> None:
    from rich.table import Table

    m = report.metrics
    t = Table(title=f"retrieval on {report.n_pairs:,} pairs ({args.pairs})", title_justify="left")
    t.add_column("direction")
    for k in (1, 5, 10):
        t.add_column(f"R@{k}", justify="right")
    t.add_column("mean rank", justify="right")
    t.add_column("median rank", justify="right")
    for name, label in (("image_to_text", "image -> text"), ("text_to_image", "text -> image")):
        t.add_row(
            label,
            *(f"{100 * m[f'{name}_R@{k}']:.2f}" for k in (1, 5, 10)),
            f"{m[f'{name}_mean_rank']:.2f}",
            f"{m[f'{name}_median_rank']:.0f}",
        )
    c = console()
    c.print(t)
    c.print(f"Recall@K in %. model: {args.model}")
    if report.truncated_captions:
        c.print(f"{report.truncated_captions} caption(s) truncated to the context length")
    for s in report.skipped:
        c.print(f"[yellow]skipped[/] {s['id']}: {s['error']}")
