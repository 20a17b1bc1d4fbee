"""``--engine ray``: the per-article stages (fetch, extract, pair) as Ray tasks on a cluster.

Each task downloads its package (if needed) and extracts and pairs it, writing its results into
the work directory, which must be on a filesystem every node sees (NFS, Lustre, a FUSE bucket).
The driver keeps a bounded number of tasks in flight and runs the ordered global stages itself,
so the shards are byte-identical to the local engine's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict

from biomedclip.errors import ConfigError
from biomedclip.pmc.article import Outcome, process_article
from biomedclip.pmc.config import FetchConfig, PairConfig
from biomedclip.pmc.fetch import FetchResult, fetch_article
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.state import WorkDir

log = logging.getLogger(__name__)


def article_task(
    ref: dict, root: str, fetch_cfg: dict | None, pair_cfg: dict, digest: str, pair: bool
):
    """Fetch (when asked and needed), then extract/pair one article; returns plain dicts."""
    ref_ = ArticleRef.from_dict(ref)
    work = WorkDir(root)
    fetched = None
    if fetch_cfg is not None and not ref_.is_local and not work.package(ref_.pmcid).is_file():
        res = fetch_article(ref_, work, FetchConfig(**fetch_cfg))
        fetched = asdict(res)
        if res.status == "failed":
            return fetched, None
    if not ref_.is_local and not work.package(ref_.pmcid).is_file():
        return fetched, Outcome(
            ref_.pmcid, "not_fetched", reason="package not downloaded"
        ).to_dict()
    out = process_article(ref_, work, PairConfig(**pair_cfg), digest, pair)
    return fetched, out.to_dict()


class RayEngine:
    """Runs :func:`article_task` on Ray; ``workers`` caps the tasks in flight (0: cluster CPUs x 2)."""

    def __init__(self, workers: int = 0, address: str | None = None):
        self.workers = workers
        self.address = address

    def _init(self):
        try:
            import ray
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ConfigError("--engine ray needs Ray: pip install 'biomedclip[ray]'") from e
        if not ray.is_initialized():
            ray.init(
                address=self.address or os.environ.get("RAY_ADDRESS"),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        return ray

    def run(
        self,
        refs: list[ArticleRef],
        work: WorkDir,
        fetch_cfg: FetchConfig | None,
        pair_cfg: PairConfig,
        digest: str,
        pair: bool,
        on_fetch,
        on_outcome,
    ) -> None:
        ray = self._init()
        task = ray.remote(num_cpus=1, max_retries=2)(article_task)
        limit = self.workers or max(2, int(ray.cluster_resources().get("CPU", 1)) * 2)
        root = str(work.root.resolve())
        fcfg = asdict(fetch_cfg) if fetch_cfg else None
        pcfg = asdict(pair_cfg)
        pending = []
        it = iter(refs)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                ref = next(it, None)
                if ref is None:
                    exhausted = True
                else:
                    pending.append(task.remote(asdict(ref), root, fcfg, pcfg, digest, pair))
            if not pending:
                break
            done, pending = ray.wait(pending, num_returns=1)
            for obj in done:
                fetched, outcome = ray.get(obj)
                if fetched is not None:
                    on_fetch(FetchResult(**fetched))
                if outcome is not None:
                    on_outcome(Outcome(**outcome))
