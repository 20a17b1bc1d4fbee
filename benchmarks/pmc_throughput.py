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
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, scratch_dir, summarise, write_result  # noqa: E402
from _reference import SHARED  # noqa: E402


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
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="200 articles instead of 2,000")
    ap.add_argument("--articles", type=int, help="corpus size (default 2000, or 200 with --quick)")
    ap.add_argument(
        "--repeats", type=int, help="timed runs per variant (default 3, 2 with --quick)"
    )
    ap.add_argument(
        "--keep", type=Path, help="build the corpus here and keep it (reused if present)"
    )
    ap.add_argument("--tokenizer", default=str(SHARED / "biomedclip_hub"), help="tokenizer folder")
    args = ap.parse_args()
    n = args.articles or (200 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 3)
    tmp = Path(scratch_dir("pmc_bench_"))
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
        runs: dict[str, list[dict]] = {}

        def variant(workers: int):
            name = "1_process" if workers == 1 else f"{workers}_processes"
            runs[name] = []

            def go():
                runs[name].append(run(corpus, tmp / f"out{workers}", workers, args.tokenizer))

            return name, go

        variants = dict(variant(w) for w in sorted({1, cores}))
        timings = interleaved(variants, repeats)  # the warm-up run also gives the shards digest
        rows = summarise(timings, "1_process", items=n)
        for name, results in runs.items():
            first, timed = results[0], results[1:]
            rows[name].update(
                {
                    "workers": first["workers"],
                    "articles": first["articles"],
                    "pairs": first["pairs"],
                    "samples_written": first["samples_written"],
                    "stage_median_s": {
                        k: round(statistics.median(r["seconds"][k] for r in timed), 3)
                        for k in first["seconds"]
                    },
                    "shards_digest": first["shards_digest"],
                }
            )
            r = rows[name]
            print(
                f"{r['workers']:>2} process(es): {r['articles']} articles, {r['pairs']} pairs, "
                f"median {r['median_s']:.1f} s -> {r['items_per_s']:.1f} articles/s "
                f"(stages {r['stage_median_s']})"
            )
        digests = {r["shards_digest"] for results in runs.values() for r in results}
        identical = len(digests) == 1
        speedup = rows[list(rows)[-1]]["speedup_vs_1_process"]
        print(f"speed-up {cores} cores vs 1: {speedup:.2f}x; shards identical: {identical}")
        out = write_result(
            "pmc_throughput" + ("_quick" if args.quick else ""),
            {
                "stages": "list + extract + pair + dedup/split + write + report (local packages)",
                "reference": "none (the PMC-15M pipeline code was not released); 1 process vs all "
                "cores, warmed up, runs interleaved",
                "corpus": {
                    "articles": n,
                    "source": "8 real PMC .nxml repeated with generated images",
                },
                "repeats": repeats,
                "variants": rows,
                "speedup_all_cores": speedup,
                "shards_identical_in_every_run": identical,
            },
        )
        print(f"wrote {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
