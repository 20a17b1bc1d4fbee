"""Realistic synthetic embedding collections for index tuning and benchmarks.

Uniform random unit vectors are the wrong test set for an index (every point is equally far from
every other). Real CLIP-style embeddings are:

* in a narrow cone: a shared mean direction, so two unrelated items have cosine ~0.4-0.5;
* anisotropic: the variance around the mean decays over principal directions (a power law);
* clustered at two levels (figure type / organ / stain, then finer groups), with very unequal
  cluster sizes (Zipf);
* full of near-duplicates (re-used figures, sub-figures, adjacent slices).

:class:`VectorProfile` holds those statistics; :meth:`VectorProfile.fit` estimates them from real
embeddings (mean direction, eigen-spectrum slope, k-means at two levels, cluster-size slope,
near-duplicate share); :func:`generate` draws ``n`` vectors chunk by chunk (into a memory map for
large ``n``): ``x = normalise(a*mu + T[topic] + S[topic, sub] + e)``, with ``T``, ``S`` and ``e``
Gaussian in the anisotropic basis and their variances giving the profile's cosines.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CHUNK = 65536


@dataclass(frozen=True)
class VectorProfile:
    """Statistics of an embedding collection (defaults: CLIP-like, see the module doc)."""

    dim: int = 512
    mean_cosine: float = 0.45  # cosine of two unrelated items (the cone)
    spectrum_decay: float = 0.8  # eigenvalue i of the residual covariance ~ i**-decay
    topics: int = 1000
    topic_zipf: float = 1.0  # size of the r-th largest topic ~ r**-zipf
    subclusters: int = 8  # per topic
    topic_share: float = 0.35  # residual variance shares: topic centre, sub-cluster centre, item
    sub_share: float = 0.25
    near_duplicates: float = 0.05  # share of items that are a near copy of an earlier item
    duplicate_noise: float = 0.1  # noise norm of a near copy (cosine ~0.995)

    @property
    def item_share(self) -> float:
        return max(0.0, 1.0 - self.topic_share - self.sub_share)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def fit(cls, vectors: np.ndarray, topics: int = 0, seed: int = 0) -> VectorProfile:
        """Estimate the statistics of real (unit) embeddings ``[n, dim]`` (n >= a few hundred)."""
        import faiss

        x = _unit(np.asarray(vectors, np.float32))
        n, dim = x.shape
        mu = x.mean(0)
        a2 = float(mu @ mu)  # E[cos(x_i, x_j)] for i != j, approximately
        mean_cos = (a2 * n - 1) / (n - 1)
        r = x - mu
        ev = np.linalg.eigvalsh(np.cov(r, rowvar=False))[::-1]
        top = max(4, min(dim, n // 2) // 2)
        ranks = np.arange(1, top + 1)
        decay = -np.polyfit(np.log(ranks), np.log(np.maximum(ev[:top], 1e-12)), 1)[0]
        total = float((r * r).sum(1).mean())
        topics = topics or max(2, min(1000, n // 80))

        def kmeans_share(data: np.ndarray, k: int) -> tuple[float, np.ndarray]:
            km = faiss.Kmeans(dim, k, niter=20, seed=seed, verbose=False)
            km.train(data)
            _, assign = km.index.search(data, 1)
            resid = data - km.centroids[assign[:, 0]]
            return 1 - float((resid * resid).sum(1).mean()) / total, assign[:, 0]

        topic_share, assign = kmeans_share(r, topics)
        fine_share, _ = kmeans_share(r, max(topics + 1, min(n // 20, topics * 8)))
        sizes = np.sort(np.bincount(assign, minlength=topics))[::-1]
        sizes = sizes[sizes > 0]
        zipf = -np.polyfit(np.log(np.arange(1, len(sizes) + 1)), np.log(sizes), 1)[0]
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        sims, _ = index.search(x, 2)
        dups = float(np.mean(sims[:, 1] > 0.98)) / 2  # both items of a pair count
        return cls(
            dim=dim,
            mean_cosine=round(float(np.clip(mean_cos, 0.0, 0.95)), 4),
            spectrum_decay=round(float(np.clip(decay, 0.0, 3.0)), 3),
            topics=topics,
            topic_zipf=round(float(np.clip(zipf, 0.0, 3.0)), 3),
            subclusters=8,
            topic_share=round(max(0.0, topic_share), 3),
            sub_share=round(max(0.0, fine_share - topic_share), 3),
            near_duplicates=round(dups, 4),
        )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Mixture:
    """The fixed parts of a collection: mean direction, basis, spectrum, cluster centres."""

    def __init__(self, p: VectorProfile, seed: int):
        rng = np.random.default_rng(seed)
        d = p.dim
        self.p = p
        basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
        lam = np.arange(1, d + 1, dtype=np.float64) ** -p.spectrum_decay
        self.scale = (np.sqrt(lam / lam.sum())[:, None] * basis.T).astype(np.float32)  # [d, d]
        mu = rng.standard_normal(d)
        self.mu = (mu / np.linalg.norm(mu)).astype(np.float32)
        self.a = math.sqrt(p.mean_cosine / max(1 - p.mean_cosine, 1e-6))
        w = np.arange(1, p.topics + 1, dtype=np.float64) ** -p.topic_zipf
        self.topic_p = w / w.sum()
        self.topic = self.draw(rng, p.topics, p.topic_share)
        self.sub = self.draw(rng, p.topics * p.subclusters, p.sub_share)

    def draw(self, rng: np.random.Generator, n: int, share: float) -> np.ndarray:
        """``n`` Gaussian vectors in the anisotropic basis with expected squared norm ``share``."""
        z = rng.standard_normal((n, self.p.dim), dtype=np.float32)
        return math.sqrt(share) * (z @ self.scale)

    def items(self, rng: np.random.Generator, n: int) -> np.ndarray:
        p = self.p
        t = rng.choice(p.topics, size=n, p=self.topic_p)
        s = t * p.subclusters + rng.integers(0, p.subclusters, n)
        x = self.a * self.mu + self.topic[t] + self.sub[s] + self.draw(rng, n, p.item_share)
        return _unit(x).astype(np.float32)


def generate(
    profile: VectorProfile, n: int, seed: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """``n`` unit vectors from ``profile`` (written into ``out``, e.g. a ``np.memmap``, if given).

    Near-duplicates copy an earlier item of the same chunk with small noise. The same
    ``(profile, seed)`` always gives the same collection, and :func:`queries` fresh draws of it.
    """
    mix = _Mixture(profile, seed)
    out = np.empty((n, profile.dim), np.float32) if out is None else out
    for c, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, c])
        x = mix.items(rng, min(CHUNK, n - start))
        dup = np.flatnonzero(rng.random(len(x)) < profile.near_duplicates)
        dup = dup[dup > 0]
        if len(dup):
            src = (rng.random(len(dup)) * dup).astype(np.int64)  # an earlier item in the chunk
            noise = rng.standard_normal((len(dup), profile.dim), dtype=np.float32)
            noise *= profile.duplicate_noise / math.sqrt(profile.dim)
            x[dup] = _unit(x[src] + noise)
        out[start : start + len(x)] = x
    return out


def queries(profile: VectorProfile, n: int, seed: int = 0) -> np.ndarray:
    """``n`` fresh items from the same mixture as ``generate(profile, ..., seed)`` (not in it)."""
    mix = _Mixture(profile, seed)
    return mix.items(np.random.default_rng([seed, 1 << 30]), n)
