"""Vector-index speed and accuracy: 1M random 512-d unit vectors, top-10 queries.

For each layout that ``biomedclip index build`` can choose (flat = exact, hnsw, ivfpq, ivfpq with
exact re-scoring), built through ``biomedclip.index.build_index_from_arrays`` and queried through
``VectorIndex``, this prints the build time, the index size, the p50/p95 latency of single top-10
queries (one FAISS thread; FAISS search alone and with the metadata lookup) and recall@10 against exact search
(``IndexFlatIP`` on the same vectors: the reference). Two synthetic data sets:

* ``uniform``: i.i.d. Gaussian directions, the worst case for any approximate index (every
  point is almost equally far from every other);
* ``clustered``: points around 10,000 random centres (cosine to the centre ~0.8), closer to real
  embedding collections, which are strongly clustered.

Approximate layouts are also queried at larger ``ef_search`` / ``nprobe`` (the speed/recall knob
of ``biomedclip search``).

Usage: ``python benchmarks/index_speed.py [--quick] [--n N] [--kinds flat,hnsw,ivfpq]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from biomedclip.index import IndexSpec, build_index_from_arrays

SWEEPS = {"hnsw": ("ef_search", (256, 512)), "ivfpq": ("nprobe", (128, 512))}
RESULTS = Path(__file__).resolve().parent / "results" / "index_speed.json"


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(
    kind: str, n: int, n_queries: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    total = n + n_queries
    if kind == "uniform":
        x = rng.standard_normal((total, dim), dtype=np.float32)
    else:
        centres = unit(rng.standard_normal((10_000, dim), dtype=np.float32))
        x = np.empty((total, dim), dtype=np.float32)
        for start in range(0, total, 100_000):
            stop = min(start + 100_000, total)
            noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * (
                0.75 / np.sqrt(dim)
            )
            x[start:stop] = centres[rng.integers(0, len(centres), stop - start)] + noise
    unit(x)
    return x[:n], x[n:]


def rss_gib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth)]))


def time_single_queries(fn, queries: np.ndarray) -> list[float]:
    fn(queries[:1])  # warm-up
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None])
        times.append(time.perf_counter() - t)
    return times


def run_layout(name, spec, base, queries, truth, lat_queries, work, k):
    ids = [f"v{i}" for i in range(len(base))]
    t0 = time.perf_counter()
    index = build_index_from_arrays(ids, base, work / name, model="benchmark-random", spec=spec)
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (work / name).iterdir())
    _, found = index.search_vectors(queries, k)
    rec = recall_at_k(found, truth)
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query, one thread: OpenMP on busy cores is far slower
    try:
        raw = time_single_queries(lambda q: index.search_vectors(q, k), lat_queries)
        full = time_single_queries(lambda q: index.search(q, k), lat_queries)
    finally:
        faiss.omp_set_num_threads(threads)
    row = {
        "layout": name,
        "kind": index.kind,
        "params": index.manifest.params,
        "build_s": round(build_s, 2),
        "index_dir_mib": round(size / 2**20, 1),
        "query_p50_ms": round(1e3 * float(np.median(raw)), 3),
        "query_p95_ms": round(1e3 * float(np.percentile(raw, 95)), 3),
        "query_with_metadata_p50_ms": round(1e3 * float(np.median(full)), 3),
        f"recall@{k}": round(rec, 4),
    }
    print(
        f"  {name:<14} build {build_s:8.1f}s  {row['index_dir_mib']:8.1f} MiB  "
        f"p50 {row['query_p50_ms']:8.3f} ms (with metadata {row['query_with_metadata_p50_ms']:8.3f})"
        f"  p95 {row['query_p95_ms']:8.3f} ms  recall@{k} {rec:.4f}",
        flush=True,
    )
    name_param, values = SWEEPS.get(index.kind, (None, ()))
    for value in values:  # query-time speed/recall trade-off, same index
        index.set_search_params(**{name_param: value})
        _, found = index.search_vectors(queries, k)
        faiss.omp_set_num_threads(1)
        try:
            t = time_single_queries(lambda q: index.search_vectors(q, k), lat_queries[:50])
        finally:
            faiss.omp_set_num_threads(threads)
        point = {
            name_param: value,
            f"recall@{k}": round(recall_at_k(found, truth), 4),
            "query_p50_ms": round(1e3 * float(np.median(t)), 3),
        }
        row.setdefault("sweep", []).append(point)
        print(
            f"  {'':<14} {name_param}={value}: p50 {point['query_p50_ms']:8.3f} ms  "
            f"recall@{k} {point[f'recall@{k}']:.4f}",
            flush=True,
        )
    index = None  # free the index before the next layout is built
    shutil.rmtree(work / name, ignore_errors=True)
    gc.collect()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="100k vectors, fewer queries (a minute or two)"
    )
    ap.add_argument("--n", type=int, default=None, help="database size (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--recall-queries", type=int, default=None, help="queries for recall (default 500)"
    )
    ap.add_argument(
        "--latency-queries", type=int, default=None, help="single queries timed (default 200)"
    )
    ap.add_argument("--kinds", default="flat,hnsw,ivfpq,ivfpq-refine")
    ap.add_argument("--data", default="uniform,clustered")
    ap.add_argument("--out", type=Path, default=None, help=f"results JSON (default {RESULTS})")
    args = ap.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    n_rec = args.recall_queries or (200 if args.quick else 500)
    n_lat = args.latency_queries or (50 if args.quick else 200)
    out = args.out or (RESULTS.with_name("index_speed_quick.json") if args.quick else RESULTS)

    import faiss
    import torch

    specs = {
        "flat": IndexSpec(kind="flat"),
        "hnsw": IndexSpec(kind="hnsw"),
        "ivfpq": IndexSpec(kind="ivfpq"),
        "ivfpq-refine": IndexSpec(kind="ivfpq", refine=True),
    }
    auto = IndexSpec().resolve(n, args.dim)
    print(
        f"{n:,} x {args.dim} vectors, top-{args.k}; `index build` would choose: {auto.kind} "
        f"{auto.params}",
        flush=True,
    )
    results = {
        "benchmark": "index_speed",
        "machine": {
            "cpu_count": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "faiss": faiss.__version__,
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "n": n,
        "dim": args.dim,
        "k": args.k,
        "recall_queries": n_rec,
        "latency_queries": n_lat,
        "auto_choice": auto.to_dict(),
        "latency_threads": 1,
        "build_threads": faiss.omp_get_max_threads(),
        "complete": False,
        "reference": "exact search (faiss.IndexFlatIP) on the same vectors",
        "datasets": {},
    }
    work = Path(tempfile.mkdtemp(prefix="index_speed_"))
    try:
        for data in args.data.split(","):
            t = time.perf_counter()
            base, queries = make_data(data, n, n_rec, args.dim, seed=0)
            exact = faiss.IndexFlatIP(args.dim)
            exact.add(base)
            _, truth = exact.search(queries, args.k)
            del exact
            print(
                f"[{data}] data + exact ground truth in {time.perf_counter() - t:.1f}s", flush=True
            )
            rows = results["datasets"].setdefault(data, [])
            for kind in args.kinds.split(","):
                rows.append(
                    run_layout(
                        kind, specs[kind], base, queries, truth, queries[:n_lat], work, args.k
                    )
                )
                write(out, results)  # partial results survive an interrupted run
            del base, queries
            gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["note"] = (
        "2-core machine shared with other jobs: latencies include that contention (see load averages)"
    )
    results["peak_rss_gib"] = round(rss_gib(), 2)
    print(f"peak RSS {results['peak_rss_gib']} GiB")
    results["complete"] = True
    write(out, results)
    print(f"wrote {out}")


def write(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
