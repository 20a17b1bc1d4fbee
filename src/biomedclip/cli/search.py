"""``biomedclip search``: find the indexed images/texts closest to a text or an image query."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json

HELP = "search an index by text or image (cross-modal: text -> images, image -> captions, ...)"
DESCRIPTION = """\
Embed each QUERY text (or --image file) with the model and print the --top-k closest rows of the
index built by `biomedclip index build`: rank, cosine score, id and metadata (path, text,
modality, ...). The model defaults to the one recorded in the index; another model is refused,
since its vectors live in another space.

examples:
  biomedclip search "chest X-ray with pleural effusion" --index idx/ --top-k 5
  biomedclip search --image query.png --index idx/ --modality text      # image -> captions
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
        "--ef-search",
        type=int,
        default=None,
        help="HNSW: query-time search width (default: the index's)",
    )
    p.add_argument(
        "--nprobe",
        type=int,
        default=None,
        help="IVF-PQ: lists visited a query (default: the index's)",
    )
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run, model=None)
    for action in p._actions:  # the model defaults to the index's own
        if action.dest == "model":
            action.help = "model used to embed queries (default: the index's model)"


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import load_from_args
    from biomedclip.errors import InputError
    from biomedclip.index import Searcher, VectorIndex

    if not args.queries and not args.image:
        raise InputError("give a text QUERY or --image FILE")
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    index = VectorIndex.open(args.index)
    if args.ef_search is not None or args.nprobe is not None:
        index.set_search_params(ef_search=args.ef_search, nprobe=args.nprobe)
    if args.model is None:
        if not index.manifest.model:
            raise InputError(f"{args.index}: the index does not record its model; pass --model")
        args.model = index.manifest.model
    model, preprocess, tokenizer = load_from_args(args)
    searcher = Searcher.from_model(model, tokenizer, preprocess, index)
    results: list[tuple[str, str, list]] = []
    if args.queries:
        hits = searcher.search_text(args.queries, args.top_k, args.modality)
        results += [("text", q, h) for q, h in zip(args.queries, hits)]
    for image in args.image:  # one by one: an unreadable image is reported by name
        results.append(("image", image, searcher.search_image(image, args.top_k, args.modality)[0]))
    if args.json:
        print_json(
            [
                {"query": q, "query_type": kind, "results": [h.to_dict() for h in hits]}
                for kind, q, hits in results
            ]
        )
    else:
        for kind, q, hits in results:
            _print_table(kind, q, hits)
    return 0


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
