"""Seeded percentile bootstrap confidence intervals for every headline metric.

Resamples are drawn and scored in blocks: memory is O(block x n), never the full
``(resamples x n)`` index array (1,000 resamples of a 300k-item test set would be 2.4 GB of
indices alone). The blocks are drawn one after another from one generator, which yields the same
stream of indices as drawing them all at once, so a seed gives the intervals it always gave.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_RESAMPLES = 1000
BatchMetrics = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def bootstrap_ci(
    metrics: BatchMetrics,
    y: np.ndarray,
    scores: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    max_elements: int = 4_000_000,
) -> dict[str, tuple[float, float]]:
    """Percentile ``level`` interval of each metric over ``n_resamples`` resamples (with
    replacement) of the items; the same ``seed`` gives the same intervals.

    ``metrics`` maps a batch ``(y[idx], scores[idx])`` with a leading resample axis to
    ``name -> [B]`` values (see :mod:`.metrics`); resamples are drawn and processed in blocks of
    at most ``max_elements`` score values (at least one resample), so memory stays
    O(block x n). Resamples where a metric is undefined (e.g. AUROC with one class) are left
    out of that metric's interval.
    """
    if n_resamples <= 0:
        return {}
    n = len(y)
    rng = np.random.default_rng(seed)
    per_row = max(1, int(np.prod(scores.shape)))
    block = max(1, max_elements // per_row)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_resamples, block):
        rows = rng.integers(0, n, (min(block, n_resamples - start), n))
        for name, values in metrics(y[rows], scores[rows]).items():
            draws.setdefault(name, []).append(np.asarray(values, float))
    alpha = (1 - level) / 2
    out = {}
    for name, parts in draws.items():
        v = np.concatenate(parts)
        v = v[np.isfinite(v)]
        out[name] = (
            (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
            if len(v)
            else (float("nan"), float("nan"))
        )
    return out
