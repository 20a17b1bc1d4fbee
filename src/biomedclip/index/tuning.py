"""Recall-targeted choice of search parameters at build time, on a held-out query sample.

A few hundred rows of the collection are drawn at random as queries (:class:`QuerySample`); their
exact top-(k+1) neighbours are computed by brute force while the vectors stream into the index
(each query's own row is then left out of both the exact and the approximate lists, so recall
means "finds the other close items"). :func:`tune` walks each parameter ladder (``nprobe``,
``ef_search``, ``refine_factor``) from cheap to expensive and keeps the fastest setting whose
recall@k reaches the target; the chosen values and the recall measured go into the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biomedclip.index.layouts import faiss_module, search_parameters

log = logging.getLogger(__name__)
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
REFINE_FACTORS = (8, 16, 32, 64, 128, 256)  # exact re-ranking of k*f rows is cheap
PLATEAU = 0.002  # stop raising a knob once two more steps gain less recall than this
LATENCY_QUERIES = 50
# tune to a little above the target: ~2 standard errors of a 500-query recall estimate, so the
# cheapest setting found on the sample still reaches the target on unseen queries
MARGIN = 0.01


@dataclass
class QuerySample:
    """Held-out queries: dataset positions, then their vectors, index rows and exact neighbours."""

    positions: np.ndarray  # sorted dataset positions (pre-deduplication order)
    k: int
    vectors: list[np.ndarray] = field(default_factory=list)
    rows: dict[int, int] = field(default_factory=dict)  # dataset position -> index row
    _scores: np.ndarray | None = None
    _ids: np.ndarray | None = None

    @classmethod
    def draw(cls, count: int, size: int, k: int, seed: int) -> QuerySample:
        size = min(size, count)
        rng = np.random.default_rng(seed + 1)
        return cls(np.sort(rng.choice(count, size=size, replace=False)), k)

    def collect(self, vectors: np.ndarray, start: int) -> None:
        """Keep the sampled vectors among dataset positions ``start .. start+len(vectors)``."""
        lo, hi = np.searchsorted(self.positions, [start, start + len(vectors)])
        if hi > lo:
            self.vectors.append(vectors[self.positions[lo:hi] - start])

    @property
    def queries(self) -> np.ndarray:
        return np.concatenate(self.vectors).astype(np.float32) if self.vectors else np.zeros((0, 0))

    def observe(self, vectors: np.ndarray, first_row: int, positions: np.ndarray) -> None:
        """Vectors just added as rows ``first_row..``: update the exact top-(k+1) lists."""
        q = self.queries
        if not len(q) or not len(vectors):
            return
        hit = np.isin(positions, self.positions)
        for j in np.flatnonzero(hit):
            self.rows[int(positions[j])] = first_row + int(j)
        sims = q @ vectors.T
        take = min(self.k + 1, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        scores = np.take_along_axis(sims, part, axis=1)
        ids = part.astype(np.int64) + first_row
        if self._scores is not None:
            scores = np.concatenate([self._scores, scores], axis=1)
            ids = np.concatenate([self._ids, ids], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k + 1]
        self._scores = np.take_along_axis(scores, order, axis=1)
        self._ids = np.take_along_axis(ids, order, axis=1)

    def truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(queries, own rows [Q] (-1 if dropped as a duplicate), exact rows [Q, k+1])``."""
        own = np.array([self.rows.get(int(p), -1) for p in self.positions], np.int64)
        return self.queries, own, self._ids


def recall_at_k(found: np.ndarray, own: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean recall@k with each query's own row removed from both lists."""
    total = 0.0
    for f, o, t in zip(found, own, truth):
        want = [x for x in t if x != o][:k]
        got = [x for x in f if x != o and x >= 0][:k]
        total += len(set(want) & set(got)) / max(len(want), 1)
    return total / max(len(truth), 1)


def _latency_ms(index, queries: np.ndarray, k: int, params) -> float:
    """p50 of single-query latency on one thread (what one interactive user sees)."""
    faiss = faiss_module()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.search(queries[:1], k, params=params)
        times = []
        for q in queries[:LATENCY_QUERIES]:
            t = time.perf_counter()
            index.search(q[None], k, params=params)
            times.append(time.perf_counter() - t)
    finally:
        faiss.omp_set_num_threads(threads)
    return 1e3 * float(np.median(times))


def tune(
    index, kind: str, params: dict[str, Any], sample: QuerySample, target: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params with the chosen search settings, report for the manifest)``."""
    queries, own, truth = sample.truth()
    k = sample.k
    report: dict[str, Any] = {"recall_target": target, "k": k, "queries": int(len(queries))}
    if kind == "flat" or truth is None or not len(queries):
        return params, {**report, "recall": 1.0, "exact": True}
    t0 = time.perf_counter()

    def measure(p: dict[str, Any]) -> float:
        _, found = index.search(queries, k + 1, params=search_parameters(kind, p))
        return recall_at_k(found, own, truth, k)

    goal = min(1.0, target + MARGIN)
    grid: list[dict[str, Any]] = []
    if kind == "hnsw":
        knob, ladder = "ef_search", [v for v in LADDER if v >= k] + [1536, 2048]
        fixed = [{}]
    else:
        knob = "nprobe"
        ladder = [v for v in LADDER if v < params["nlist"]] + [params["nlist"]]
        refine = params.get("refine", "none") != "none"
        factors = [params["refine_factor"]] if params.get("refine_factor") else REFINE_FACTORS
        fixed = [{"refine_factor": f} for f in factors] if refine else [{}]
    if params.get(knob):  # the user fixed it: measure only
        ladder = [params[knob]]
    best = None
    for extra in fixed:
        history: list[float] = []
        for v in ladder:
            p = {**params, **extra, knob: v}
            r = measure(p)
            point = {**extra, knob: v, "recall": round(r, 4)}
            grid.append(point)
            history.append(r)
            plateau = len(history) >= 3 and history[-1] - history[-3] < PLATEAU
            if r >= goal or v == ladder[-1] or plateau:
                point["p50_ms"] = round(
                    _latency_ms(index, queries, k, search_parameters(kind, p)), 3
                )
                key = (r < goal, point["p50_ms"] if r >= goal else -r)  # else best recall
                if best is None or key < best[0]:
                    best = (key, p, point)
                break
        if best is not None and not best[0][0] and point is not best[2]:
            break  # met before, and this larger factor is slower: larger ones will be too
    _, chosen, point = best
    report.update(
        recall=point["recall"],
        target_met=point["recall"] >= target,
        tuned_to=goal,
        p50_ms_one_thread=point["p50_ms"],
        chosen={
            knob: chosen[knob],
            **({"refine_factor": chosen["refine_factor"]} if fixed[0] else {}),
        },
        grid=grid,
        seconds=round(time.perf_counter() - t0, 2),
    )
    if not report["target_met"]:
        log.warning("recall target %.3f not reached (best %.4f)", target, point["recall"])
    return chosen, report
