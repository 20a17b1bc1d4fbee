"""``biomedclip search``: find the indexed images/texts closest to a text or an image query."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json
from biomedclip.cli.image_args import add_image_args

HELP = "search an index by text or image (cross-modal: text -> images, image -> captions, ...)"
DESCRIPTION = """\
Embed each QUERY text (or --image file) with the model and print the --top-k closest rows of the
index built by `biomedclip index build`: rank, cosine score, id and metadata (path, text,
modality, ...). The model defaults to the one recorded in the index; another model is refused,
since its vectors live in another space. --where filters on the index's metadata columns inside
the search, so the top-k is filled with matching rows. Image queries read DICOM, NIfTI, 16-bit
TIFF and whole slides like every command (--window, --frames, --slices, --tile-size...); a file
that gives several images (frames, slices, tiles) is one query: the mean of their embeddings.
An unreadable query image is reported and the others are still searched (exit status 1).

examples:
  biomedclip search "chest X-ray with pleural effusion" --index idx/ --top-k 5
  biomedclip search --image query.png --index idx/ --modality text      # image -> captions
  biomedclip search "brain MRI" --index idx/ --where split=test --where year>=2018
  biomedclip search --image ct.dcm --window lung --index idx/ --precision bf16
  biomedclip search "brain MRI" "lung CT" --index idx/ --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="text queries")
    p.add_argument(
        "--image", action="append", default=[], metavar="FILE", help="image query (repeatable)"
    )
    p.add_argument("--index", required=True, metavar="DIR", help="index folder")
    p.add_argument("--top-k", "-k", type=int, default=10, help="results per query (default: 10)")
    p.add_argument(
        "--modality",
        choices=["image", "text"],
        default=None,
        help="only return rows of this modality (an index may hold both)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COND",
        help="metadata filter, repeatable (all must hold): col=value, col=a,b (any of), "
        "col!=value, col>=value, col<value ...",
    )
    p.add_argument(
        "--refine-factor",
        type=int,
        default=None,
        help="IVF-PQ: candidates re-ranked per result (default: the index's, tuned at build)",
    )
    p.add_argument(
        "--ef-search",
        type=int,
        default=None,
        help="HNSW: query-time search width (default: the index's, tuned at build)",
    )
    p.add_argument(
        "--nprobe",
        type=int,
        default=None,
        help="IVF: lists visited a query (default: the index's, tuned at build)",
    )
    add_json_flag(p)
    add_model_args(p, batch_size=16)
    add_image_args(p)
    p.set_defaults(func=run, model=None)
    for action in p._actions:  # the model defaults to the index's own
        if action.dest == "model":
            action.help = "model used to embed queries (default: the index's model)"


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import encoder_from_args, err_console, load_from_args
    from biomedclip.errors import InputError
    from biomedclip.index import Searcher, VectorIndex

    if not args.queries and not args.image:
        raise InputError("give a text QUERY or --image FILE")
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    index = VectorIndex.open(args.index)
    index.set_search_params(args.ef_search, args.nprobe, args.refine_factor)
    where = list(args.where) + ([f"modality={args.modality}"] if args.modality else [])
    if where:
        index.mask(where)  # a bad column or value fails before the model loads
    if args.model is None:
        if not index.manifest.model:
            raise InputError(f"{args.index}: the index does not record its model; pass --model")
        args.model = index.manifest.model
    model, preprocess, tokenizer = load_from_args(args)
    searcher = Searcher(encoder_from_args(args, model, preprocess, tokenizer), index)
    results: list[tuple[str, str, list]] = []
    if args.queries:
        hits = searcher.search_text(args.queries, args.top_k, where or None)
        results += [("text", q, h) for q, h in zip(args.queries, hits)]
    failed = []
    if args.image:
        found = searcher.search_images(args.image, args.top_k, where or None)
        results += [("image", q, h) for q, h in zip(args.image, found.hits) if h is not None]
        failed = found.failures
    if args.json:
        out = [
            {"query": q, "query_type": kind, "results": [h.to_dict() for h in hits]}
            for kind, q, hits in results
        ]
        out += [
            {"query": f.path or f.id, "query_type": "image", "error": str(f.error)} for f in failed
        ]
        print_json(out)
    else:
        for kind, q, hits in results:
            _print_table(kind, q, hits)
        for f in failed:
            err_console().print(f"[bold red]error:[/] {f.path or f.id}: {f.error}", soft_wrap=True)
    return 1 if failed else 0


def _print_table(kind: str, query: str, hits) -> None:
    from rich.table import Table

    t = Table(title=f"{kind} query: {query}", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("score", justify="right")
    t.add_column("id", overflow="fold")
    t.add_column("modality")
    t.add_column("path / text", overflow="fold")
    for h in hits:
        m = h.metadata
        parts = [str(m["path"])] if m.get("path") and m.get("path") != h.id else []
        if m.get("text"):
            parts.append(_short(str(m["text"])))
        t.add_row(
            str(h.rank), f"{h.score:.4f}", h.id, str(m.get("modality") or ""), "\n".join(parts)
        )
    console().print(t)


def _short(s: str, n: int = 200) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"
