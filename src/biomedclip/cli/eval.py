"""``biomedclip eval``: evaluation protocols, one sub-command each (``retrieval`` for now).

To add a protocol, write ``_register_<name>(sub)`` that adds its parser with
``set_defaults(func=...)`` and list it in ``EVALUATIONS``.
"""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json

HELP = "evaluate a model: image-text retrieval (Recall@K, mean/median rank)"

RETRIEVAL_DESCRIPTION = """\
Cross-modal retrieval on image-caption pairs: every image is a query over all captions
(image->text) and every caption over all images (text->image); the match of pair i is item i.
Reports Recall@1/5/10, mean and median rank (1-based), the paper's and open_clip's metrics,
computed exactly (no approximate search) in blocks, so 100k pairs are fine.

PAIRS: a CSV with columns image,caption (image paths relative to the CSV; optional id), or a MedICaT
.jsonl (images in figures/ beside it, or --figures). Unreadable images are listed and left
out; the exit code is then 1.

examples:
  biomedclip eval retrieval pairs.csv
  biomedclip eval retrieval medicat/sample.jsonl --json
  biomedclip eval retrieval pairs.csv --model ./finetuned --ranks-out ranks.json
"""


def _register_retrieval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrieval",
        help="image<->text retrieval metrics on image-caption pairs",
        description=RETRIEVAL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pairs", metavar="PAIRS", help="PAIRS.csv (image,caption) or MedICaT .jsonl")
    p.add_argument(
        "--figures",
        default=None,
        metavar="DIR",
        help="MedICaT: folder of the figure files (default: figures/ beside the .jsonl)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate the first N pairs"
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="items per forward pass (default: 64)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding processes (default: min(4, CPUs - 1))",
    )
    p.add_argument(
        "--ranks-out",
        default=None,
        metavar="FILE",
        help="also write every pair's ranks (JSON) for error analysis",
    )
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run_retrieval)


EVALUATIONS = {"retrieval": _register_retrieval}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help=HELP,
        description="Evaluation protocols; see `biomedclip eval PROTOCOL -h`.",
    )
    esub = p.add_subparsers(dest="eval_command", metavar="PROTOCOL", required=True)
    for add in EVALUATIONS.values():
        add(esub)


def run_retrieval(args: argparse.Namespace) -> int:
    import os

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from biomedclip.cli.common import err_console, load_from_args
    from biomedclip.errors import InputError
    from biomedclip.eval.pairs import read_pairs
    from biomedclip.eval.retrieval_eval import evaluate_retrieval
    from biomedclip.io_utils import atomic_write_json

    pairs = read_pairs(args.pairs, args.figures)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        pairs = pairs[: args.limit]
    workers = (
        args.workers if args.workers is not None else min(4, max((os.cpu_count() or 1) - 1, 0))
    )
    model, preprocess, tokenizer = load_from_args(args)
    with Progress(
        TextColumn("embedding pairs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("embed", total=2 * len(pairs))
        report = evaluate_retrieval(
            model,
            tokenizer,
            preprocess,
            pairs,
            batch_size=args.batch_size,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
        )
    if args.ranks_out:
        atomic_write_json(args.ranks_out, report.to_dict(with_ranks=True))
    result = {"pairs_file": str(args.pairs), "model": args.model, **report.to_dict()}
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
