"""Zero-shot classification of a labelled set: the engine's prompt-ensemble classifier
(:meth:`Encoder.classifier`: mean of the normalised prompt embeddings per class, renormalised)
against cached image features.

* single-label sets: ``softmax(logit_scale * image @ classes.T)`` over the classes (CLIP).
* multi-label sets: each label is scored on its own, never in competition with the others: the
  cosine similarity of image and label embedding, or ``sigmoid(logit_scale * cos + logit_bias)``
  for models trained with a sigmoid loss (SigLIP); metrics are mAP and macro AUROC over labels.
"""

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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def resolved_templates(templates) -> list[str]:
    from biomedclip.zeroshot import resolve_templates

    return list(resolve_templates(templates))


def zeroshot_scores(
    encoder, features: np.ndarray, classnames, templates, multilabel: bool = False
) -> np.ndarray:
    """``[N, C]`` scores: class probabilities (softmax over the classes) or, with
    ``multilabel``, independent per-label scores (cosine, or sigmoid with a logit bias)."""
    weights = _np(encoder.classifier(list(classnames), templates))
    cos = features @ weights.T
    if not multilabel:
        return softmax(float(encoder.logit_scale) * cos)
    bias = getattr(encoder, "logit_bias", None)
    if bias is not None:
        return sigmoid(float(encoder.logit_scale) * cos + float(bias))
    return cos


def evaluate_zeroshot(
    encoder,
    features: Features,
    classnames: Sequence[str],
    templates: Sequence[str] | str | None,
    model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    prompt_source: str = "given",
) -> EvalResult:
    """Zero-shot metrics (with bootstrap intervals) of ``features`` among ``classnames``."""
    ds = features.dataset
    temps = resolved_templates(templates)
    scores = zeroshot_scores(encoder, features.embeddings, classnames, temps, ds.multilabel)
    metrics, ci, details = score_predictions(features.labels, scores, n_resamples, seed)
    bias = getattr(encoder, "logit_bias", None)
    scoring = (
        "softmax over classes"
        if not ds.multilabel
        else ("per-label sigmoid" if bias is not None else "per-label cosine")
    )
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
        scores,
        settings={
            "templates": temps,
            "classnames": list(classnames),
            "dataset_classes": list(ds.classes),
            "prompts": prompt_source,
            "scoring": scoring,
            "dataset_notes": list(ds.notes),
        },
        ids=features.ids,
    )
