"""Chaining the stages, and the local engine (threads for downloads, processes for articles).

:class:`Pipeline` runs each stage alone (``run_list``, ``run_fetch``, ``run_articles``,
``run_split``, ``run_write``, ``run_report``) or all of them (``build``). Per-article work goes to
an engine: :class:`LocalEngine` (default: a thread pool downloads, a process pool extracts and
pairs as soon as each package arrives) or :class:`biomedclip.pmc.ray_engine.RayEngine`. Engines
only change where per-article work runs; dedup, split and write are sequential and ordered, so
every engine and every resumed run produce the same bytes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict

from biomedclip.io_utils import atomic_open, atomic_write_json
from biomedclip.pmc.article import Outcome, process_article
from biomedclip.pmc.config import BuildConfig, FetchConfig, PairConfig, pair_digest
from biomedclip.pmc.fetch import FetchResult, fetch_article, fetch_file_list, package_url
from biomedclip.pmc.filelist import ArticleRef, local_refs, read_file_list, read_selected, select
from biomedclip.pmc.state import EXTRACTED, PAIRED, PENDING, QUARANTINED, WorkDir

log = logging.getLogger(__name__)
OnFetch = Callable[[FetchResult], None]
OnOutcome = Callable[[Outcome], None]


def needs_fetch(ref: ArticleRef, work: WorkDir) -> bool:
    return not ref.is_local and not work.package(ref.pmcid).is_file()


def _warm(_: int = 0) -> int:
    return os.getpid()


class LocalEngine:
    """Downloads in a thread pool; extract/pair in a process pool (or inline with one worker)."""

    def __init__(self, workers: int = 0):
        self.workers = workers or os.cpu_count() or 1

    def run(
        self,
        refs: list[ArticleRef],
        work: WorkDir,
        fetch_cfg: FetchConfig | None,
        pair_cfg: PairConfig,
        digest: str,
        pair: bool,
        on_fetch: OnFetch,
        on_outcome: OnOutcome,
    ) -> None:
        self._args = (work, pair_cfg, digest, pair)
        pool = self._start_pool() if self.workers > 1 else None
        fetcher = ThreadPoolExecutor(fetch_cfg.concurrency) if fetch_cfg else None
        crashes: Counter[str] = Counter()
        in_fetch: dict[Future, ArticleRef] = {}
        in_proc: dict[Future, ArticleRef] = {}
        limit = max(4 * self.workers, 2 * (fetch_cfg.concurrency if fetch_cfg else 1))

        def submit(ref: ArticleRef) -> None:
            nonlocal pool
            if pool is None:
                on_outcome(process_article(ref, work, pair_cfg, digest, pair))
            else:
                in_proc[pool.submit(process_article, ref, work, pair_cfg, digest, pair)] = ref

        try:
            it = iter(refs)
            exhausted = False
            while True:
                while not exhausted and len(in_fetch) + len(in_proc) < limit:
                    ref = next(it, None)
                    if ref is None:
                        exhausted = True
                    elif fetcher is not None and needs_fetch(ref, work):
                        in_fetch[fetcher.submit(fetch_article, ref, work, fetch_cfg)] = ref
                    elif needs_fetch(ref, work):
                        on_outcome(
                            Outcome(ref.pmcid, "not_fetched", reason="package not downloaded")
                        )
                    else:
                        submit(ref)
                if not in_fetch and not in_proc:
                    if exhausted:
                        break
                    continue
                done, _ = wait([*in_fetch, *in_proc], return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut in in_fetch:
                        ref = in_fetch.pop(fut)
                        res = fut.result()
                        on_fetch(res)
                        if res.status != "failed":
                            submit(ref)
                        continue
                    ref = in_proc.pop(fut)
                    try:
                        on_outcome(fut.result())
                    except BrokenProcessPool:
                        # a worker died (e.g. a decoder crash): restart, retry its articles once
                        pool = self._restart(pool, in_proc)
                        crashes[ref.pmcid] += 1
                        if crashes[ref.pmcid] > 1:
                            work.write_quarantine(
                                ref.pmcid, "pair", "worker_crash", "worker died twice"
                            )
                            on_outcome(Outcome(ref.pmcid, QUARANTINED, reason="worker_crash"))
                        else:
                            submit(ref)
        finally:
            if fetcher is not None:
                fetcher.shutdown(wait=True, cancel_futures=True)
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _start_pool(self) -> ProcessPoolExecutor:
        # fork: workers inherit the loaded tokenizer; all are forked now, before any thread starts
        ctx = multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        )
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        list(pool.map(_warm, range(self.workers)))
        return pool

    def _restart(
        self, pool: ProcessPoolExecutor, in_proc: dict[Future, ArticleRef]
    ) -> ProcessPoolExecutor:
        pool.shutdown(wait=False, cancel_futures=True)
        pending = list(in_proc.values())
        in_proc.clear()
        new = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        for ref in pending:
            in_proc[new.submit(process_article, ref, *self._args)] = ref
        return new


def make_engine(cfg: BuildConfig):
    if cfg.engine == "ray":
        from biomedclip.pmc.ray_engine import RayEngine

        return RayEngine(cfg.workers, cfg.ray_address)
    return LocalEngine(cfg.workers)


class _Progress:
    def __init__(self, total: int | None, desc: str, enabled: bool, unit: str = "article"):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def __call__(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Pipeline:
    """One build's stages over a work directory."""

    def __init__(self, cfg: BuildConfig, progress: bool = False):
        self.cfg = cfg.validate()
        self.work = WorkDir(cfg.out)
        self.progress = progress
        self.timings: dict[str, float] = {}

    # ---- list ------------------------------------------------------------------------------
    def run_list(self, refresh: bool = False) -> dict:
        """Select articles; a remote file list is downloaded once and kept unless ``refresh``."""
        lc = self.cfg.listing
        t0 = time.perf_counter()
        if lc.local_dir:
            refs, source = local_refs(lc.local_dir), str(lc.local_dir)
        else:
            source = lc.file_list or package_url(self.cfg.fetch.mirror, "oa_file_list.csv")
            local = fetch_file_list(source, self.work.list_file.parent, self.cfg.fetch, refresh)
            refs = read_file_list(local, source)
        result = select(refs, lc)
        with atomic_open(self.work.list_file, "w") as f:
            for ref in result.selected:
                f.write(ref.to_json() + "\n")
        summary = {"source": source, **result.counts}
        atomic_write_json(self.work.list_summary, summary)
        self.timings["list"] = time.perf_counter() - t0
        return summary

    def refs(self) -> list[ArticleRef]:
        return read_selected(self.work.list_file)

    # ---- fetch -----------------------------------------------------------------------------
    def run_fetch(self) -> dict:
        """Download every selected package not yet here (threads; resumable)."""
        refs = [r for r in self.refs() if needs_fetch(r, self.work)]
        counts: Counter[str] = Counter()
        bar = _Progress(len(refs), "fetch", self.progress)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.cfg.fetch.concurrency) as pool:
            for res in pool.map(lambda r: fetch_article(r, self.work, self.cfg.fetch), refs):
                counts[res.status] += 1
                bar()
        bar.close()
        self.timings["fetch"] = time.perf_counter() - t0
        return {"to_fetch": len(refs), **dict(counts)}

    # ---- extract / pair (per article, parallel) --------------------------------------------
    def run_articles(self, pair: bool = True, fetch: bool = False) -> dict:
        """Extract (and pair) every article, on the configured engine; ``fetch`` overlaps downloads."""
        from biomedclip.pmc.pair import get_tokenizer

        if pair:
            get_tokenizer(
                self.cfg.pair.tokenizer_dir
            )  # fail fast, and let forked workers inherit it
        digest = pair_digest(self.cfg.pair)
        refs = self.refs()
        self.work.remove_stale_temp_files()
        counts: Counter[str] = Counter()
        todo = []
        for ref in refs:
            status = self.work.status(ref.pmcid, digest)
            if status in (QUARANTINED, PAIRED) or (status == EXTRACTED and not pair):
                counts["cached"] += 1
            else:
                todo.append(ref)
        bar = _Progress(len(todo), "pair" if pair else "extract", self.progress)
        fetched: Counter[str] = Counter()

        def on_fetch(res: FetchResult) -> None:
            fetched[res.status] += 1
            if res.status == "failed":
                counts["fetch_failed"] += 1
                bar()

        def on_outcome(out: Outcome) -> None:
            counts[out.status] += 1
            bar()

        t0 = time.perf_counter()
        make_engine(self.cfg).run(
            todo,
            self.work,
            self.cfg.fetch if fetch else None,
            self.cfg.pair,
            digest,
            pair,
            on_fetch,
            on_outcome,
        )
        bar.close()
        self.timings["fetch+pair" if fetch else ("pair" if pair else "extract")] = (
            time.perf_counter() - t0
        )
        return {"articles": len(refs), **dict(sorted(counts.items())), "fetch": dict(fetched)}

    # ---- split (dedup + split) -------------------------------------------------------------
    def run_split(self) -> dict:
        from biomedclip.pmc.split import plan_articles, write_plan

        t0 = time.perf_counter()
        paired = [
            (r.pmcid, self.work.paired(r.pmcid))
            for r in self.refs()
            if self.work.status(r.pmcid) == PAIRED
        ]
        counts = write_plan(plan_articles(paired, self.cfg.split), self.work.plan_file)
        self.timings["split"] = time.perf_counter() - t0
        return counts

    # ---- write -----------------------------------------------------------------------------
    def run_write(self) -> dict:
        import hashlib

        from biomedclip.errors import InputError
        from biomedclip.pmc.shards import write_shards

        if not self.work.plan_file.is_file():
            raise InputError(f"{self.work.plan_file}: no plan (run `biomedclip pmc split` first)")
        self.work.remove_stale_temp_files()
        t0 = time.perf_counter()
        digest = hashlib.sha256(self.work.plan_file.read_bytes()).hexdigest()
        bar = _Progress(None, "write", self.progress, unit="sample")
        manifest = write_shards(self.work, self.cfg.write, digest, progress=bar)
        bar.close()
        self.timings["write"] = time.perf_counter() - t0
        return manifest

    # ---- report ----------------------------------------------------------------------------
    def run_report(self) -> dict:
        from biomedclip.pmc.report import build_report

        return build_report(self.work, self.refs(), dict(self.timings) or None)

    # ---- everything ------------------------------------------------------------------------
    def build(self, refresh_list: bool = False) -> dict:
        """list -> fetch+extract+pair -> dedup+split -> write -> report."""
        self.work.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.work.root / "config.json", _config_dict(self.cfg))
        self.run_list(refresh_list)
        articles = self.run_articles(pair=True, fetch=True)
        self.run_split()
        self.run_write()
        report = self.run_report()
        report["run"] = articles
        return report


def _config_dict(cfg: BuildConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


__all__ = ["LocalEngine", "Pipeline", "make_engine", "needs_fetch", "PENDING"]
