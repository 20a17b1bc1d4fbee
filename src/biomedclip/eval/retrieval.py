"""Cross-modal retrieval metrics (the paper's and open_clip's): Recall@K, mean and median rank.

Pair ``i`` of ``image_features`` matches pair ``i`` of ``text_features``. Ranks are exact: the
similarity matrix is processed in blocks, so 100k pairs fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _ranks(queries: torch.Tensor, keys: torch.Tensor, block: int) -> torch.Tensor:
    """0-based rank of the matching key (same index) for each query."""
    ranks = torch.empty(queries.shape[0], dtype=torch.long)
    for start in range(0, queries.shape[0], block):
        q = queries[start : start + block]
        sims = q @ keys.T
        idx = torch.arange(start, start + q.shape[0])
        target = sims[torch.arange(q.shape[0]), idx].unsqueeze(1)
        # rank = how many keys score strictly higher than the match (ties favour the match)
        ranks[start : start + q.shape[0]] = (sims > target).sum(dim=1)
    return ranks


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
    """The metrics of :func:`retrieval_metrics` from 0-based ranks (see :func:`retrieval_ranks`)."""
    out: dict[str, float] = {"n_pairs": float(len(next(iter(ranks.values()))))}
    for name, r in ranks.items():
        for kk in ks:
            out[f"{name}_R@{kk}"] = float((r < kk).float().mean())
        out[f"{name}_mean_rank"] = float(r.float().mean() + 1)
        # open_clip's definition: floor of the (numpy, midpoint) median of 0-based ranks, plus one
        out[f"{name}_median_rank"] = float(math.floor(float(r.double().quantile(0.5))) + 1)
    return out


def retrieval_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, block: int = 4096
) -> dict[str, torch.Tensor]:
    """0-based rank of the matching item per query: ``{"image_to_text": [N], "text_to_image": [N]}``."""
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"{image_features.shape[0]} images vs {text_features.shape[0]} texts: pairs must align"
        )
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    return {"image_to_text": _ranks(img, txt, block), "text_to_image": _ranks(txt, img, block)}
