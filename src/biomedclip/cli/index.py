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

Layout (--kind auto): exact search (flat) up to --exact-max vectors; an HNSW graph up to
--hnsw-max (fast, high recall, keeps full vectors in RAM); IVF-PQ beyond (64 bytes a 512-d vector,
approximate scores unless --refine).

examples:
  biomedclip index build emb/ --out idx/
  biomedclip index build emb/ --out idx/ --kind hnsw --hnsw-m 48 --ef-search 256
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
    g = b.add_argument_group("layout")
    g.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivfpq"],
        help="index layout (default: auto, by size)",
    )
    g.add_argument(
        "--exact-max",
        type=int,
        default=100_000,
        metavar="N",
        help="auto: exact search up to N vectors (default: %(default)s)",
    )
    g.add_argument(
        "--hnsw-max",
        type=int,
        default=2_000_000,
        metavar="N",
        help="auto: HNSW up to N vectors, IVF-PQ above (default: %(default)s)",
    )
    g.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node (default: 32)")
    g.add_argument(
        "--ef-construction", type=int, default=40, help="HNSW build-time search width (default: 40)"
    )
    g.add_argument(
        "--ef-search",
        type=int,
        default=128,
        help="HNSW query-time search width; more = better recall, slower (default: 128)",
    )
    g.add_argument("--nlist", type=int, default=0, help="IVF lists (default: ~sqrt(N))")
    g.add_argument("--pq-m", type=int, default=0, help="PQ bytes a vector (default: dim/8)")
    g.add_argument("--nprobe", type=int, default=32, help="IVF lists visited a query (default: 32)")
    g.add_argument(
        "--refine",
        action="store_true",
        help="IVF-PQ: keep full vectors and re-score candidates exactly",
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


def _warn_incomplete(path: str) -> None:
    from pathlib import Path

    from biomedclip.cli.common import err_console
    from biomedclip.index import EmbeddingManifest

    if EmbeddingManifest.read(Path(path)).complete is False:
        err_console().print(
            f"[yellow]warning:[/] {path}: the embedding run is not complete; indexing what exists"
        )


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biomedclip.index import EmbeddingManifest, IndexSpec, build_index

    spec = IndexSpec(
        kind=args.kind,
        exact_max=args.exact_max,
        hnsw_max=args.hnsw_max,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        nlist=args.nlist,
        pq_m=args.pq_m,
        nprobe=args.nprobe,
        refine=args.refine,
    )
    _warn_incomplete(args.embeddings)
    total = EmbeddingManifest.read(Path(args.embeddings)).count
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
    from pathlib import Path

    from biomedclip.index import EmbeddingManifest, VectorIndex

    index = VectorIndex.open(args.index)
    _warn_incomplete(args.embeddings)
    total = EmbeddingManifest.read(Path(args.embeddings)).count
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
    t.add_row("model", str(m.model))
    if m.model_sha256:
        t.add_row("model sha256", m.model_sha256)
    t.add_row("dimension", str(m.dim))
    t.add_row("metric", f"{m.metric} (unit vectors: cosine)")
    t.add_row("faiss", m.faiss_version)
    console().print(t)
