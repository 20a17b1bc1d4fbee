"""Which FAISS layout to build, and its size parameters; search parameters are tuned at build time.

``kind="auto"``: exact search (``flat``) up to ``exact_max`` vectors; above, IVF-PQ with 4-bit
fast-scan codes (``dim/8`` bytes a vector, scanned with SIMD lookup tables) whose candidates are
re-ranked (``refine``): ``flat`` = exact float32 copies (exact scores) while the vectors fit in
half of ``memory_gib``, else ``sq8`` = 8-bit copies (1 byte a dimension) when those fit, else none.
Scanning compact codes keeps a query's CPU time to a fraction of a millisecond, which matters on
a busy machine: a query that needs more than one scheduler slice waits behind every other job.
``ivf`` (IVF-Flat: full vectors in the lists) and ``hnsw`` are available explicitly. All layouts use
inner product on L2-normalised vectors, so scores are cosine similarities.

Search parameters left at 0 (``nprobe``, ``ef_search``, ``refine_factor``) are chosen at build
time by :mod:`biomedclip.index.tuning`: the cheapest setting whose recall@k on a held-out sample
of the collection reaches ``recall_target``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from biomedclip.errors import ConfigError

KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
REFINES = ("auto", "none", "sq8", "flat")
GIB = 2**30


@dataclass
class IndexSpec:
    """How to index. Zero parameters are derived from the size or tuned to ``recall_target``."""

    kind: str = "auto"
    exact_max: int = 20_000
    memory_gib: float = 8.0  # auto: the index must fit in this much RAM
    recall_target: float = 0.95  # recall@tune_k the tuned search parameters must reach
    tune_k: int = 10
    tune_queries: int = 500  # held-out sample of the collection used for tuning
    nlist: int = 0  # lists (0: a power of two near sqrt(n) for ivfpq, 2*sqrt(n) for ivf)
    nprobe: int = 0  # lists visited a query (0: tuned)
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 0  # 0: tuned
    pq_m: int = 0  # sub-quantizers (0: dim // 4 with 4-bit codes, dim // 8 with 8-bit codes)
    pq_bits: int = 4  # 4: fast-scan (SIMD), 8: classic PQ
    refine: str = "auto"  # ivfpq re-ranking store: auto (by memory_gib), none, sq8, flat
    refine_factor: int = 0  # candidates re-ranked = k * refine_factor (0: tuned)
    train_size: int = 0  # 0: 40 vectors per list (at least 10,000), for IVF training

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.refine not in REFINES:
            raise ConfigError(f"unknown refine {self.refine!r} (choose from {', '.join(REFINES)})")
        if not 0.0 < self.recall_target <= 1.0:
            raise ConfigError(f"recall target must be in (0, 1], got {self.recall_target}")

    def resolve(self, count: int, dim: int) -> ResolvedSpec:
        """Fix the kind and every size parameter for ``count`` vectors of ``dim``."""
        budget = self.memory_gib * GIB
        kind = self.kind
        if kind == "auto":
            kind = "flat" if count <= self.exact_max else "ivfpq"
        params: dict[str, Any] = {}
        if kind == "hnsw":
            params = dict(
                m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search
            )
        elif kind in ("ivf", "ivfpq"):
            nlist = self.nlist or auto_nlist(count, 2.0 if kind == "ivf" else 1.0)
            if count < nlist:
                raise ConfigError(
                    f"{kind} needs at least nlist={nlist} vectors to train, got {count}: "
                    "use --kind flat or a smaller --nlist"
                )
            params = dict(
                nlist=nlist,
                nprobe=min(self.nprobe, nlist),
                train_size=self.train_size or max(40 * nlist, 10_000),
            )
        if kind == "ivfpq":
            if self.pq_bits not in (4, 8):
                raise ConfigError(f"pq_bits must be 4 (fast-scan) or 8, got {self.pq_bits}")
            pq_m = self.pq_m or _default_pq_m(dim, 4 if self.pq_bits == 4 else 8)
            if dim % pq_m:
                raise ConfigError(f"pq_m={pq_m} must divide the dimension {dim}")
            if count < 2**self.pq_bits:
                raise ConfigError(
                    f"ivfpq needs at least {2**self.pq_bits} vectors to train (pq_bits="
                    f"{self.pq_bits}); got {count}: use --kind flat"
                )
            code = pq_m * self.pq_bits // 8
            refine = self.refine
            if refine == "auto":
                if 4 * dim * count <= budget / 2:
                    refine = "flat"
                elif (code + dim + 16) * count <= budget:
                    refine = "sq8"
                else:
                    refine = "none"
            params.update(
                pq_m=pq_m, pq_bits=self.pq_bits, refine=refine, refine_factor=self.refine_factor
            )
        return ResolvedSpec(kind, params, memory_bytes(kind, params, count, dim))


def auto_nlist(count: int, factor: float = 1.0) -> int:
    """A power of two near ``factor * sqrt(count)``, with at least ~39 training vectors a list."""
    target = factor * math.sqrt(max(count, 1))
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and nlist * 39 > count:
        nlist //= 2
    return min(nlist, 65536)


def memory_bytes(kind: str, params: dict[str, Any], count: int, dim: int) -> int:
    """Approximate RAM of the loaded index (vectors/codes + ids + centroids or graph links)."""
    if kind == "flat":
        return 4 * dim * count
    if kind == "hnsw":
        return (4 * dim + 8 * int(params["m"])) * count
    code = int(params["pq_m"]) * int(params["pq_bits"]) // 8 if kind == "ivfpq" else 4 * dim
    per_vector = 8 + code
    refine = params.get("refine", "none")
    per_vector += {"none": 0, "sq8": dim, "flat": 4 * dim}[refine]
    return per_vector * count + 4 * dim * int(params["nlist"])


def _default_pq_m(dim: int, dims_per_code: int) -> int:
    for m in (dim // dims_per_code, dim // 4, dim // 2, dim):
        if m >= 1 and dim % m == 0:
            return m
    return dim


@dataclass
class ResolvedSpec:
    kind: str
    params: dict[str, Any]
    memory_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
