"""Which FAISS layout to build: exact up to a size threshold, graph (HNSW) or compressed (IVF-PQ) above.

All layouts use inner product on L2-normalised vectors, so scores are cosine similarities (exact for
``flat`` and ``hnsw``, PQ-approximate for ``ivfpq`` unless ``refine`` re-scores with full vectors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from biomedclip.errors import ConfigError

KINDS = ("auto", "flat", "hnsw", "ivfpq")


@dataclass
class IndexSpec:
    """How to index; ``kind="auto"`` picks by the number of vectors.

    auto: ``flat`` (exact) up to ``exact_max`` vectors, ``hnsw`` up to ``hnsw_max`` (the graph and
    full vectors stay in RAM: ~(4*dim + 8*hnsw_m) bytes a vector), ``ivfpq`` beyond (``pq_m`` bytes
    a vector). Zero/None parameters are derived from the size and dimension.
    """

    kind: str = "auto"
    exact_max: int = 100_000
    hnsw_max: int = 2_000_000
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 128
    nlist: int = 0  # 0: ~sqrt(n)
    pq_m: int = 0  # 0: dim // 8 (64 bytes a vector for 512-d)
    pq_bits: int = 8
    nprobe: int = 32
    refine: bool = False  # ivfpq: keep full vectors and re-score the top k*refine_factor exactly
    refine_factor: int = 4
    train_size: int = 0  # 0: max(64 * nlist, 65536) vectors sampled for IVF-PQ training

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r} (choose from {', '.join(KINDS)})")

    def resolve(self, count: int, dim: int) -> ResolvedSpec:
        """Fix the kind and every derived parameter for ``count`` vectors of ``dim``."""
        kind = self.kind
        if kind == "auto":
            kind = (
                "flat" if count <= self.exact_max else "hnsw" if count <= self.hnsw_max else "ivfpq"
            )
        params: dict[str, Any] = {}
        if kind == "hnsw":
            params = dict(
                m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search
            )
        elif kind == "ivfpq":
            nlist = self.nlist or max(1, min(65536, int(math.sqrt(max(count, 1)))))
            pq_m = self.pq_m or _default_pq_m(dim)
            if dim % pq_m:
                raise ConfigError(f"pq_m={pq_m} must divide the dimension {dim}")
            min_train = max(nlist, 2**self.pq_bits)
            if count < min_train:
                raise ConfigError(
                    f"ivfpq needs at least {min_train} vectors to train (nlist={nlist}, "
                    f"pq_bits={self.pq_bits}); got {count}: use --kind flat or a smaller --nlist"
                )
            params = dict(
                nlist=nlist,
                pq_m=pq_m,
                pq_bits=self.pq_bits,
                nprobe=min(self.nprobe, nlist),
                refine=self.refine,
                refine_factor=self.refine_factor,
                train_size=self.train_size or max(64 * nlist, 65536),
            )
        return ResolvedSpec(kind, params)


def _default_pq_m(dim: int) -> int:
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m >= 1 and dim % m == 0:
            return m
    return dim


@dataclass
class ResolvedSpec:
    kind: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
