"""PMC pipeline throughput: articles/s and pairs/s for extract + pair + (dedup, split) + write.

Builds a corpus of >= 2,000 PMC-style packages from the 8 real articles in ../shared/data/pmc/nxml
(each repeated under new PMCIDs with distinct generated images, 1-4 figures per article as in the
originals), then runs the stages with one process and with all cores on the same corpus and checks
that both produce byte-identical shards. There is no reference implementation to compare with
(PMC-15M's code was never released), so the comparison is 1 process vs all cores.

    python benchmarks/pmc_throughput.py [--quick] [--articles N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMEDCLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _make_package(args) -> tuple[str, int]:
    from _pmc_corpus import article_package, set_pmcid

    i, path, out = args
    pmcid = f"PMC{80_000_000 + i}"
    xml = set_pmcid(Path(path).read_bytes(), pmcid)
    data = article_package(
        xml, pmcid, seed=i + 1, fmt_cycle=("jpg", "jpg", "jpg", "png"), xml_name=Path(path).name
    )
    dest = Path(out) / f"{pmcid}.tar.gz"
    dest.write_bytes(data)
    return pmcid, len(data)


def build_corpus(n: int, out: Path) -> int:
    files = sorted((SHARED / "pmc" / "nxml").glob("*.nxml"))
    if not files:
        sys.exit(f"no .nxml files in {SHARED / 'pmc' / 'nxml'}")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(files[i % len(files)]), str(out)) for i in range(n)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        return sum(size for _, size in pool.map(_make_package, jobs, chunksize=16))


def run(corpus: Path, out: Path, workers: int, tokenizer: str) -> dict:
    from biomedclip.pmc.config import BuildConfig, ListConfig, PairConfig
    from biomedclip.pmc.pipeline import Pipeline

    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    cfg = BuildConfig(
        out=out,
        listing=ListConfig(local_dir=str(corpus)),
        pair=PairConfig(tokenizer_dir=tokenizer),
        workers=workers,
    )
    pipe = Pipeline(cfg)
    pipe.run_list()
    t0 = time.perf_counter()
    articles = pipe.run_articles(pair=True)
    t1 = time.perf_counter()
    pipe.run_split()
    t2 = time.perf_counter()
    manifest = pipe.run_write()
    t3 = time.perf_counter()
    report = pipe.run_report()
    n_art = articles["articles"]
    pairs = report["pair"]["pairs"]
    total = t3 - t0
    digest = hashlib.sha256()
    for s in manifest["shards"]:
        digest.update(s["sha256"].encode())
    return {
        "workers": workers,
        "articles": n_art,
        "pairs": pairs,
        "samples_written": report["write"]["samples"],
        "seconds": {
            "extract+pair": t1 - t0,
            "dedup+split": t2 - t1,
            "write": t3 - t2,
            "total": total,
        },
        "articles_per_s": n_art / total,
        "pairs_per_s": pairs / total,
        "extract_pair_articles_per_s": n_art / (t1 - t0),
        "shards_digest": digest.hexdigest(),
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="200 articles instead of 2,000")
    ap.add_argument("--articles", type=int, help="corpus size (default 2000, or 200 with --quick)")
    ap.add_argument(
        "--keep", type=Path, help="build the corpus here and keep it (reused if present)"
    )
    ap.add_argument("--tokenizer", default=str(SHARED / "biomedclip_hub"), help="tokenizer folder")
    args = ap.parse_args()
    n = args.articles or (200 if args.quick else 2000)
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="pmc_bench_"))
    corpus = args.keep or tmp / "corpus"
    try:
        t = time.perf_counter()
        if not (corpus.is_dir() and len(list(corpus.glob("*.tar.gz"))) == n):
            shutil.rmtree(corpus, ignore_errors=True)
            size = build_corpus(n, corpus)
            print(
                f"corpus: {n} packages, {size / 1e6:.0f} MB, built in {time.perf_counter() - t:.0f} s"
            )
        cores = os.cpu_count() or 1
        results = [run(corpus, tmp / "out1", 1, args.tokenizer)]
        if cores > 1:
            results.append(run(corpus, tmp / f"out{cores}", cores, args.tokenizer))
        for r in results:
            print(
                f"{r['workers']:>2} process(es), load avg {r['load_avg_1min']['before']:.1f}: "
                f"{r['articles']} articles, {r['pairs']} pairs in "
                f"{r['seconds']['total']:.1f} s -> {r['articles_per_s']:.1f} articles/s, "
                f"{r['pairs_per_s']:.1f} pairs/s (extract+pair {r['seconds']['extract+pair']:.1f} s, "
                f"dedup+split {r['seconds']['dedup+split']:.1f} s, write {r['seconds']['write']:.1f} s)"
            )
        identical = len({r["shards_digest"] for r in results}) == 1
        speedup = results[-1]["articles_per_s"] / results[0]["articles_per_s"]
        print(f"speed-up {cores} cores vs 1: {speedup:.2f}x; shards identical: {identical}")
        out = {
            "benchmark": "pmc_throughput",
            "stages": "extract + pair + dedup/split + write (local packages, no download)",
            "reference": "none (the PMC-15M pipeline code was not released); 1 process vs all cores",
            "corpus": {"articles": n, "source": "8 real PMC .nxml repeated with generated images"},
            "results": results,
            "speedup_all_cores": speedup,
            "shards_identical": identical,
            "machine": {
                "cpu_count": cores,
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
        dest = ROOT / "benchmarks" / "results" / "pmc_throughput.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {dest}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
