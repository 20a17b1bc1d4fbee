"""Zero-shot classification of a labelled set: the engine's prompt-ensemble classifier
(:meth:`Encoder.classifier`: mean of the normalised prompt embeddings per class, renormalised)
against cached image features, ``softmax(logit_scale * image @ classes.T)``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.features import Features
from biomedclip.eval.results import EvalResult, score_predictions


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def zeroshot_scores(encoder, features: np.ndarray, classnames, templates) -> np.ndarray:
    """Class probabilities ``[N, C]`` (a softmax over the classes)."""
    weights = _np(encoder.classifier(list(classnames), templates))
    return softmax(float(encoder.logit_scale) * features @ weights.T)


def evaluate_zeroshot(
    encoder,
    features: Features,
    classnames: Sequence[str],
    templates: Sequence[str] | str | None,
    model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> EvalResult:
    """Zero-shot metrics (with bootstrap intervals) of ``features`` among ``classnames``.

    Multi-label sets are scored per label with the same softmax scores (macro AUROC).
    """
    ds = features.dataset
    probs = zeroshot_scores(encoder, features.embeddings, classnames, templates)
    metrics, ci, details = score_predictions(features.labels, probs, n_resamples, seed)
    return EvalResult(
        ds.name,
        "zeroshot_classification",
        model_name,
        metrics,
        ci,
        ds.split,
        len(features.positions),
        list(classnames),
        features.failures,
        details,
        features.labels,
        probs,
        settings={"templates": list(templates) if not isinstance(templates, str) else templates},
    )
