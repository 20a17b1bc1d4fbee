"""One evaluation result (dataset x task x model): metrics, bootstrap intervals, and what the
plots need. ``to_record()`` uses clip_benchmark's field names (``dataset``, ``model``,
``pretrained``, ``task``, ``metrics`` with ``acc1``, ``acc5``, ``mean_per_class_recall``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES, bootstrap_ci
from biomedclip.eval.metrics import (
    classification_batch,
    confusion_matrix,
    multilabel_batch,
    reliability,
    seed_mean_batch,
)


@dataclass
class EvalResult:
    dataset: str
    task: str  # zeroshot_classification | linear_probe | few_shot | coop | zeroshot_retrieval
    model: str
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    split: str = "test"
    n: int = 0
    classes: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # confusion matrix, reliability, ...
    y: np.ndarray | None = field(default=None, repr=False)
    scores: np.ndarray | None = field(default=None, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    ids: list[str] | None = field(default=None, repr=False)  # test items, for predictions.csv

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> null)."""
        return _clean(
            {
                "dataset": self.dataset,
                "model": self.model,
                "pretrained": self.model,
                "task": self.task,
                "language": "en",
                "split": self.split,
                "metrics": dict(self.metrics),
                "ci95": {k: list(v) for k, v in self.ci.items()},
                "n_samples": self.n,
                "n_failed": len(self.failures),
                "failures": self.failures,
                "classes": self.classes,
                "settings": self.settings,
                **({"details": self.details} if self.details else {}),
            }
        )


def _clean(x):
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def score_predictions(
    y: np.ndarray,
    scores: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, Any]]:
    """Metrics, their bootstrap 95 % intervals, and plot details for one prediction.

    ``scores``: probabilities ``[N, C]`` (single-label), scores ``[N, C]`` (multi-label ``y``),
    or ``[N, S, C]`` (S seeds of the same test items: metrics are the mean over seeds).
    """
    if y.ndim == 2:
        fn = multilabel_batch
    elif scores.ndim == 3:
        fn = seed_mean_batch
    else:
        fn = classification_batch
    metrics = {k: float(v[0]) for k, v in fn(y[None], scores[None]).items()}
    ci = bootstrap_ci(fn, y, scores, n_resamples, seed)
    details: dict[str, Any] = {}
    if y.ndim == 1 and scores.ndim == 2:
        details["confusion_matrix"] = confusion_matrix(
            y, scores.argmax(1), scores.shape[1]
        ).tolist()
        details["reliability"] = reliability(y, scores)
    return metrics, ci, details
