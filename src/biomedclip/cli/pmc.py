"""``biomedclip pmc``: build PMC-15M-style WebDataset shards from PubMed Central OA articles."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

DESCRIPTION = """\
Turn PubMed Central open-access articles into figure-caption WebDataset shards (PMC-15M recipe).

Stages (each a sub-command; `build` chains them; all state lives in --out, so a killed run
resumes where it stopped and produces byte-identical shards):
  list     read the OA file list (CSV or TXT layout) and select articles
  fetch    download article packages (retries, backoff, resumable partial files)
  extract  parse each article's JATS XML: figures, captions, metadata
  pair     match figures to images, convert to RGB JPEG, filter captions by tokens
  split    drop duplicate images (exact + perceptual hash), assign train/val/test by PMCID
  write    write WebDataset tar shards with sizes.json and manifest.json
  report   counts per stage with drop reasons, caption-length and image-size plots
  medicat  import a MedICaT JSONL + figures folder as pairs (then split/write/report)

examples:
  biomedclip pmc build --out pmc --license "CC BY" --license CC0 --sample 10000
  biomedclip pmc build --out pmc --mirror http://my-mirror/pub/pmc/ --engine ray
  biomedclip pmc build --out pmc --local ./articles       # folders/tar.gz of PMC articles
"""


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{s!r}: expected YYYY-MM-DD") from e


def _fractions(s: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in s.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{s!r}: expected three numbers like 0.94,0.01,0.05"
        ) from e
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{s!r}: expected three numbers (train,val,test)")
    return parts  # type: ignore[return-value]


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("pmc-build"),
        help="work/output directory holding all state and the shards (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _list_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("list (which articles)")
    g.add_argument(
        "--file-list",
        help="OA file list path or URL, .csv or .txt layout (default: <mirror>/oa_file_list.csv)",
    )
    g.add_argument(
        "--refresh-list",
        action="store_true",
        help="download the file list again (it is kept in --out after the first run)",
    )
    g.add_argument(
        "--local",
        dest="local_dir",
        help="instead of a file list: a folder of PMC*.tar.gz packages or article folders",
    )
    g.add_argument(
        "--license",
        dest="licenses",
        action="append",
        default=[],
        help="keep this license as written in the list (repeatable), e.g. 'CC BY', CC0",
    )
    g.add_argument(
        "--journal",
        dest="journals",
        action="append",
        default=[],
        help="keep this journal, as abbreviated in the citation (repeatable), e.g. 'PLoS One'",
    )
    g.add_argument("--updated-from", type=_date, help="Last Updated on or after YYYY-MM-DD")
    g.add_argument("--updated-to", type=_date, help="Last Updated on or before YYYY-MM-DD")
    g.add_argument("--year-from", type=int, help="publication year >= this")
    g.add_argument("--year-to", type=int, help="publication year <= this")
    g.add_argument(
        "--sample", type=int, help="a deterministic sample of N articles (hash of PMCID)"
    )
    g.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")


def _fetch_args(p: argparse.ArgumentParser) -> None:
    from biomedclip.pmc.config import PMC_OA_BASE

    g = p.add_argument_group("fetch")
    g.add_argument(
        "--mirror",
        default=PMC_OA_BASE,
        help="base URL holding oa_file_list.csv and oa_package/ (default: %(default)s)",
    )
    g.add_argument("--concurrency", type=int, default=4, help="parallel downloads (default: 4)")
    g.add_argument("--retries", type=int, default=5, help="retries per package (default: 5)")
    g.add_argument(
        "--backoff", type=float, default=1.0, help="first retry delay in s, doubling (default: 1)"
    )
    g.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in s (default: 60)")


def _engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local process pool, or Ray tasks on a cluster (work dir on shared storage)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes (local) or tasks in flight (ray); 0 = all cores",
    )
    g.add_argument(
        "--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)"
    )


def _pair_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pair")
    g.add_argument(
        "--max-side",
        type=int,
        default=512,
        help="resize images to this longest side (default: 512)",
    )
    g.add_argument(
        "--min-side", type=int, default=32, help="drop images with a shorter side (default: 32)"
    )
    g.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default: 90)")
    g.add_argument(
        "--min-caption-tokens",
        type=int,
        default=5,
        help="drop captions with fewer tokens incl. [CLS]/[SEP] (default: 5)",
    )
    g.add_argument(
        "--max-caption-tokens", type=int, default=0, help="drop longer captions (default: 0 = keep)"
    )
    g.add_argument(
        "--tokenizer",
        dest="tokenizer_dir",
        help="tokenizer folder for caption lengths (default: the released model's)",
    )


def _split_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("split")
    g.add_argument(
        "--split",
        dest="fractions",
        type=_fractions,
        default=(0.94, 0.01, 0.05),
        help="train,val,test fractions (default: 0.94,0.01,0.05)",
    )
    g.add_argument("--split-salt", default="biomedclip-pmc", help="salt of the PMCID hash")
    g.add_argument(
        "--phash-distance",
        type=int,
        default=4,
        help="near duplicates differ in <= this many of 64 perceptual-hash bits (default: 4)",
    )


def _write_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("write")
    g.add_argument(
        "--shard-samples",
        type=int,
        default=10_000,
        help="samples per shard at most (default: 10000)",
    )
    g.add_argument(
        "--shard-mb", type=float, default=1024, help="MB per shard at most (default: 1024)"
    )


STAGES = {
    "build": (
        "list, fetch, extract, pair, split, write and report in one resumable run",
        [_list_args, _fetch_args, _engine_args, _pair_args, _split_args, _write_args],
    ),
    "list": ("read the OA file list and select articles", [_list_args, _fetch_args]),
    "fetch": ("download the selected article packages", [_fetch_args]),
    "extract": ("parse figures and metadata from each article's JATS XML", [_engine_args]),
    "pair": (
        "match figures to images, convert and filter (per article)",
        [_engine_args, _pair_args],
    ),
    "split": ("deduplicate images and assign train/val/test by PMCID", [_split_args]),
    "write": ("write WebDataset shards, sizes.json and manifest.json", [_write_args]),
    "report": ("counts per stage, drop reasons, caption-length and image-size plots", []),
}


def register(subparsers) -> None:
    from biomedclip.cli.common import add_json_flag

    parser = subparsers.add_parser(
        "pmc",
        help="build PMC-15M-style figure-caption shards from PubMed Central",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (help_, groups) in STAGES.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _out(p)
        for add in groups:
            add(p)
        add_json_flag(p)
        p.set_defaults(func=run, stage=name)
    p = sub.add_parser(
        "medicat",
        help="import MedICaT figure-caption pairs into a work directory",
        description="Read a MedICaT JSONL (pdf_hash, fig_uri, s2_caption) and its "
        "figures folder as pairs; then run `pmc split`, `write`, `report` on --out.",
    )
    p.add_argument("jsonl", type=Path, help="MedICaT JSONL file")
    p.add_argument(
        "--figures", type=Path, required=True, help="folder of <pdf_hash>_<fig_uri> images"
    )
    _out(p)
    _pair_args(p)
    add_json_flag(p)
    p.set_defaults(func=run, stage="medicat")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def config_from_args(args: argparse.Namespace):
    from biomedclip.pmc.config import (
        BuildConfig,
        FetchConfig,
        ListConfig,
        PairConfig,
        SplitConfig,
        WriteConfig,
    )

    def pick(cls, **renames):
        kw = {}
        for f in cls.__dataclass_fields__:
            src = renames.get(f, f)
            if hasattr(args, src) and getattr(args, src) is not None:
                kw[f] = getattr(args, src)
        return cls(**kw)

    listing = pick(ListConfig)
    listing.licenses = tuple(listing.licenses)
    listing.journals = tuple(listing.journals)
    write = pick(WriteConfig)
    if getattr(args, "shard_mb", None):
        write.shard_bytes = int(args.shard_mb * 1024**2)
    return BuildConfig(
        out=args.out,
        listing=listing,
        fetch=pick(FetchConfig, backoff_s="backoff", timeout_s="timeout"),
        pair=pick(PairConfig),
        split=pick(SplitConfig, salt="split_salt"),
        write=write,
        engine=getattr(args, "engine", "local"),
        workers=getattr(args, "workers", 0),
        ray_address=getattr(args, "ray_address", None),
    )


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import console, print_json
    from biomedclip.pmc.pipeline import Pipeline

    cfg = config_from_args(args)
    pipe = Pipeline(cfg, progress=not args.no_progress)
    stage = args.stage
    if stage == "medicat":
        from biomedclip.pmc.medicat import import_medicat

        result = import_medicat(args.jsonl, args.figures, pipe.work, cfg.pair)
    elif stage == "build":
        result = pipe.build(refresh_list=args.refresh_list)
    elif stage == "list":
        result = pipe.run_list(refresh=args.refresh_list)
    elif stage == "fetch":
        result = pipe.run_fetch()
    elif stage in ("extract", "pair"):
        result = pipe.run_articles(pair=stage == "pair")
    elif stage == "split":
        result = pipe.run_split()
    elif stage == "write":
        result = pipe.run_write()
    else:
        result = pipe.run_report()
    if args.json:
        print_json(result)
    else:
        _show(console(), stage, result, pipe)
    return 0


def _show(con, stage: str, result: dict, pipe) -> None:
    from rich.table import Table

    if stage in ("build", "report"):
        table = Table(title=f"PMC pipeline report ({pipe.work.root})")
        table.add_column("stage")
        table.add_column("in", justify="right")
        table.add_column("out", justify="right")
        table.add_column("dropped (reason: n)")
        lst, ex, pr, dd = result["list"], result["extract"], result["pair"], result["dedup"]
        fmt = lambda d: ", ".join(f"{k}: {v}" for k, v in d.items()) or "-"  # noqa: E731
        table.add_row(
            "list",
            str(lst.get("rows", "")),
            str(lst.get("selected", "")),
            fmt(lst.get("dropped", {})),
        )
        f = result["fetch"]
        table.add_row(
            "fetch",
            str(f["articles"]),
            str(f.get("downloaded", 0) + f.get("local", 0)),
            fmt({k: v for k, v in f.items() if k in ("failed", "pending")}),
        )
        table.add_row(
            "extract", str(f["articles"]), str(ex.get("parsed", 0)), fmt(ex["quarantine_reasons"])
        )
        table.add_row("pair", f"{pr['figures']} figs", str(pr["pairs"]), fmt(pr["drop_reasons"]))
        table.add_row(
            "dedup", str(dd["pairs_in"]), str(dd["pairs_in"] - dd["duplicates"]), fmt(dd["reasons"])
        )
        w = result.get("write") or {}
        table.add_row(
            "write",
            "",
            f"{w.get('samples', 0)} in {w.get('shards', 0)} shards",
            fmt({s: v["samples"] for s, v in (w.get("splits") or {}).items()}),
        )
        con.print(table)
        ct = result["caption_tokens"]["written"]
        con.print(
            f"captions: median {ct['median']:.0f} tokens, > 77: {ct['over_77']}, > 256: "
            f"{ct['over_256']} of {ct['n']}; report in {pipe.work.report_dir}"
        )
        return
    table = Table(title=f"pmc {stage}")
    table.add_column("key")
    table.add_column("value")
    for k, v in result.items():
        if k in ("shards", "fields"):
            continue
        table.add_row(str(k), str(v))
    con.print(table)
