"""Cross-modal retrieval metrics (the paper's and open_clip's): Recall@K, mean and median rank.

Pair ``i`` of ``image_features`` matches pair ``i`` of ``text_features``. Ranks are exact: the
similarity matrix is processed in blocks, so 100k pairs fit in memory. Ties are scored at their
expected value under a random order of the tied keys: a match tied with ``t`` other keys below
``h`` strictly better ones is at each rank ``h .. h + t`` with probability ``1 / (t + 1)``, so a
constant model (every similarity equal) scores chance (R@K = K / N, mean rank (N + 1) / 2), not
100 %, and the metrics do not depend on the order of the pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _ranks(queries: torch.Tensor, keys: torch.Tensor, block: int) -> torch.Tensor:
    """``[N, 2]``: for each query, the keys scoring strictly higher than its match (same index),
    and the other keys tied with the match."""
    ranks = torch.empty(queries.shape[0], 2, dtype=torch.long)
    for start in range(0, queries.shape[0], block):
        q = queries[start : start + block]
        sims = q @ keys.T
        idx = torch.arange(start, start + q.shape[0])
        target = sims[torch.arange(q.shape[0]), idx].unsqueeze(1)
        ranks[start : start + q.shape[0], 0] = (sims > target).sum(dim=1)
        ranks[start : start + q.shape[0], 1] = (sims == target).sum(dim=1) - 1
    return ranks


def expected_ranks(r: torch.Tensor) -> torch.Tensor:
    """0-based expected rank per query (``higher + tied / 2``) from :func:`retrieval_ranks`
    (a 1-D tensor is taken as ranks without ties)."""
    return r.double() if r.ndim == 1 else r[:, 0].double() + r[:, 1].double() / 2


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    block: int = 4096,
) -> dict[str, float]:
    """``image_to_text_R@K``, ``text_to_image_R@K``, mean/median ranks (1-based) for aligned pairs."""
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"{image_features.shape[0]} images vs {text_features.shape[0]} texts: pairs must align"
        )
    if image_features.shape[0] == 0:
        raise ValueError("no pairs to evaluate")
    return metrics_from_ranks(retrieval_ranks(image_features, text_features, block), ks)


def metrics_from_ranks(
    ranks: dict[str, torch.Tensor], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """The metrics of :func:`retrieval_metrics` from :func:`retrieval_ranks` (``[N, 2]``: higher,
    tied) or from 0-based ranks without ties (``[N]``). Ties count at their expected value."""
    out: dict[str, float] = {"n_pairs": float(len(next(iter(ranks.values()))))}
    for name, r in ranks.items():
        higher = r.double() if r.ndim == 1 else r[:, 0].double()
        tied = torch.zeros_like(higher) if r.ndim == 1 else r[:, 1].double()
        expected = expected_ranks(r)
        for kk in ks:
            # P(rank < K) with the match uniformly placed among its tied keys
            out[f"{name}_R@{kk}"] = float(((kk - higher) / (tied + 1)).clamp(0, 1).mean())
        out[f"{name}_mean_rank"] = float(expected.mean() + 1)
        # open_clip's definition: floor of the (numpy, midpoint) median of 0-based ranks, plus one
        out[f"{name}_median_rank"] = float(math.floor(float(expected.quantile(0.5))) + 1)
    return out


def retrieval_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, block: int = 4096
) -> dict[str, torch.Tensor]:
    """Per query, the keys scoring strictly higher than the matching item and the other keys tied
    with it: ``{"image_to_text": [N, 2], "text_to_image": [N, 2]}`` (see :func:`expected_ranks`)."""
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"{image_features.shape[0]} images vs {text_features.shape[0]} texts: pairs must align"
        )
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    return {"image_to_text": _ranks(img, txt, block), "text_to_image": _ranks(txt, img, block)}
