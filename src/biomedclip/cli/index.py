"""``biomedclip index``: build, extend and describe a FAISS vector index of an embeddings dataset."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, console, print_json

HELP = "build / extend / describe a vector index (FAISS) of embeddings for `biomedclip search`"
DESCRIPTION = """\
Index the output of `biomedclip embed` (a folder with part-*.parquet and manifest.json) for fast
similarity search by `biomedclip search`. Scores are cosine similarities (inner product of unit
vectors). The index folder holds the FAISS index, the rows' metadata (Parquet) and a manifest
recording the model that made the vectors: searching with another model is refused.

Layout (--kind auto): exact search (flat) up to --exact-max vectors; an inverted file over the
full vectors (ivf: exact scores) while they fit in half of --memory-gib; IVF-PQ beyond (64 bytes
a 512-d vector) with 8-bit copies for re-ranking (--refine sq8) when those fit. Search parameters
(nprobe, ef-search, refine factor) are tuned at build time: the cheapest setting whose recall@10
on a held-out sample of the collection reaches --recall-target. The manifest records them with
the recall measured (`index info`). Indexes are memory-mapped when searched.

examples:
  biomedclip index build emb/ --out idx/
  biomedclip index build emb/ --out idx/ --recall-target 0.99      # slower, more exact
  biomedclip index build emb/ --out idx/ --kind hnsw --hnsw-m 48
  biomedclip index add more_emb/ --index idx/
  biomedclip index info idx/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)

    b = isub.add_parser(
        "build",
        help="index an embeddings dataset into a new folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("embeddings", metavar="EMBEDDINGS", help="output folder of `biomedclip embed`")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder to create")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index in --out")
    g = b.add_argument_group("layout and tuning")
    g.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "flat", "ivf", "hnsw", "ivfpq"],
        help="index layout (default: auto, by size and --memory-gib)",
    )
    g.add_argument(
        "--recall-target",
        type=float,
        default=0.95,
        metavar="R",
        help="recall@10 the tuned search parameters must reach on held-out queries "
        "(default: %(default)s); higher is slower",
    )
    g.add_argument(
        "--tune-queries",
        type=int,
        default=500,
        metavar="N",
        help="held-out sample of the collection used for tuning (default: %(default)s)",
    )
    g.add_argument(
        "--exact-max",
        type=int,
        default=20_000,
        metavar="N",
        help="auto: exact search up to N vectors (default: %(default)s)",
    )
    g.add_argument(
        "--memory-gib",
        type=float,
        default=8.0,
        metavar="GIB",
        help="auto: RAM the index may use; full vectors (ivf) while they fit in half of it, "
        "IVF-PQ beyond (default: %(default)s)",
    )
    g.add_argument("--nlist", type=int, default=0, help="IVF lists (default: ~2*sqrt(N))")
    g.add_argument("--nprobe", type=int, default=0, help="IVF lists visited (default: tuned)")
    g.add_argument("--pq-m", type=int, default=0, help="PQ bytes a vector (default: dim/8)")
    g.add_argument(
        "--refine",
        default="auto",
        choices=["auto", "none", "sq8", "flat"],
        help="IVF-PQ re-ranking store: sq8 (1 byte a dimension), flat (exact float32), none "
        "(default: sq8 when it fits in --memory-gib)",
    )
    g.add_argument(
        "--refine-factor", type=int, default=0, help="IVF-PQ: candidates re-ranked (default: tuned)"
    )
    g.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node (default: 32)")
    g.add_argument(
        "--ef-construction", type=int, default=40, help="HNSW build-time search width (default: 40)"
    )
    g.add_argument(
        "--ef-search", type=int, default=0, help="HNSW query-time width (default: tuned)"
    )
    add_json_flag(b)
    b.set_defaults(func=run_build)

    a = isub.add_parser(
        "add",
        help="append an embeddings dataset (same model) to an index",
        description="Append the vectors of EMBEDDINGS to the index. Rows whose (id, modality) is "
        "already indexed are skipped, so re-running an add is harmless. The embeddings must come "
        "from the index's model.",
    )
    a.add_argument("embeddings", metavar="EMBEDDINGS", help="output folder of `biomedclip embed`")
    a.add_argument("--index", required=True, metavar="DIR", help="index folder")
    add_json_flag(a)
    a.set_defaults(func=run_add)

    i = isub.add_parser(
        "info",
        help="describe an index: model, layout, size",
        description="Show an index folder's manifest: model, layout, vectors.",
    )
    i.add_argument("index", metavar="DIR", help="index folder")
    add_json_flag(i)
    i.set_defaults(func=run_info)


def _progress(label: str):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from biomedclip.cli.common import err_console

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    )


def _warn_incomplete(path: str) -> int:
    """Warn about an unfinished embedding run; the number of rows to index."""
    from biomedclip.cli.common import err_console
    from biomedclip.embedding.store import DatasetManifest

    manifest = DatasetManifest.read(path)
    if manifest.complete is False:
        err_console().print(
            f"[yellow]warning:[/] {path}: the embedding run is not complete; indexing what exists"
        )
    return manifest.count


def run_build(args: argparse.Namespace) -> int:
    from biomedclip.index import IndexSpec, build_index

    spec = IndexSpec(
        kind=args.kind,
        exact_max=args.exact_max,
        memory_gib=args.memory_gib,
        recall_target=args.recall_target,
        tune_queries=args.tune_queries,
        nlist=args.nlist,
        nprobe=args.nprobe,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        pq_m=args.pq_m,
        refine=args.refine,
        refine_factor=args.refine_factor,
    )
    total = _warn_incomplete(args.embeddings)
    with _progress("indexing") as bar:
        task = bar.add_task("index", total=total)
        index = build_index(
            args.embeddings,
            args.out,
            spec,
            overwrite=args.overwrite,
            progress=lambda n: bar.advance(task, n),
        )
    _show(index, args.json, f"built {args.out}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from biomedclip.index import VectorIndex

    index = VectorIndex.open(args.index)
    total = _warn_incomplete(args.embeddings)
    with _progress("adding") as bar:
        task = bar.add_task("add", total=total)
        report = index.add_embeddings(args.embeddings, progress=lambda n: bar.advance(task, n))
    if args.json:
        print_json(
            {
                "added": report.added,
                "skipped_duplicates": report.skipped_duplicates,
                "total": report.total,
                "index": str(args.index),
            }
        )
    else:
        console().print(
            f"added {report.added:,} vectors to {args.index} ({report.skipped_duplicates:,} already "
            f"indexed, skipped); {report.total:,} in all"
        )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from biomedclip.index import VectorIndex

    _show(VectorIndex.open(args.index), args.json, str(args.index))
    return 0


def _show(index, as_json: bool, title: str) -> None:
    m = index.manifest
    if as_json:
        print_json({"index": str(index.directory), **m.to_dict()})
        return
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("vectors", f"{m.count:,}")
    t.add_row("layout", f"{m.kind} {m.params or ''}".strip())
    tune = m.tuning or {}
    if tune.get("exact"):
        t.add_row("recall", "exact search")
    elif tune:
        met = "" if tune.get("target_met", True) else " [red](target not met)[/]"
        t.add_row(
            "tuned",
            f"recall@{tune.get('k')} {tune.get('recall')} on {tune.get('queries')} held-out "
            f"queries (target {tune.get('recall_target')}){met}; p50 "
            f"{tune.get('p50_ms_one_thread')} ms one thread",
        )
    t.add_row("memory", f"~{m.memory_bytes / 2**30:.2f} GiB")
    t.add_row("model", str(m.model))
    if m.model_sha256:
        t.add_row("model sha256", m.model_sha256)
    t.add_row("dimension", str(m.dim))
    t.add_row("metric", f"{m.metric} (unit vectors: cosine)")
    t.add_row("faiss", m.faiss_version)
    console().print(t)
