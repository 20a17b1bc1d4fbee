"""Slide-level zero-shot (MI-Zero / CONCH): patch similarities to each class's prompt ensemble,
pooled into one score per class by the mean of the top-K patches (or the mean of all patches).

A slide's score for class ``c`` under pooling ``K`` is the mean cosine similarity of its ``K``
patches most similar to the class embedding (all patches when the slide has fewer than ``K``);
``mean`` is the mean over every patch. Probabilities are the softmax of the model's logit scale
times those scores, as for one image. The class embeddings come from
:meth:`biomedclip.embedding.Encoder.classifier` (the mean of the normalised prompt embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biomedclip.errors import InputError
from biomedclip.slide.features_file import SlideFeatures

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50, 100)
MEAN = "mean"
Pooling = int | str  # a K, or "mean"


def pooling_name(p: Pooling) -> str:
    return MEAN if p == MEAN else f"top-{int(p)}"


def parse_poolings(text: str | Sequence[Pooling]) -> list[Pooling]:
    """``"1,5,10,mean"`` (or a list) -> ``[1, 5, 10, "mean"]``; refuses K < 1 and other words."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Pooling] = []
    for item in items:
        s = str(item).strip().lower()
        if s == MEAN:
            out.append(MEAN)
            continue
        try:
            k = int(s)
        except ValueError:
            raise InputError(f"pooling {item!r}: give K (a whole number >= 1) or 'mean'") from None
        if k < 1:
            raise InputError(f"pooling K={k}: K must be >= 1")
        out.append(k)
    if not out:
        raise InputError("no pooling given (e.g. 1,5,10,50,100,mean)")
    return list(dict.fromkeys(out))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def patch_similarities(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cosine similarity ``[N, C]`` of each patch feature to each class embedding."""
    return unit(features) @ unit(weights).T


def pool(sims: np.ndarray, pooling: Pooling) -> np.ndarray:
    """``[N, C]`` similarities -> ``[C]`` slide scores (top-K mean per class, or the mean)."""
    if len(sims) == 0:
        raise InputError("the slide has no patches to pool")
    if pooling == MEAN:
        return sims.mean(0)
    k = min(int(pooling), len(sims))
    top = -np.partition(-sims, k - 1, axis=0)[:k]  # the k largest per class (any order)
    return top.mean(0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@dataclass
class SlideZeroShot:
    """One slide's zero-shot result: class scores per pooling, probabilities for the headline
    pooling and, per class, the patches most similar to it (level-0 ``x``, ``y`` and score)."""

    slide_id: str
    labels: list[str]
    n_patches: int
    pooling: str  # the headline pooling's name
    scores: dict[str, list[float]]  # pooling name -> [C]
    probs: list[float]  # [C], headline pooling
    top_patches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def prediction(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slide_id": self.slide_id,
            "prediction": self.prediction,
            "pooling": self.pooling,
            "probs": dict(zip(self.labels, self.probs)),
            "scores": {k: dict(zip(self.labels, v)) for k, v in self.scores.items()},
            "n_patches": self.n_patches,
            "top_patches": self.top_patches,
        }


def top_patches(
    sims: np.ndarray, coords: np.ndarray, labels: Sequence[str], n: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """Per class, the ``n`` patches most similar to it: ``{"x", "y", "score", "index"}``."""
    out = {}
    for c, label in enumerate(labels):
        order = np.argsort(-sims[:, c], kind="stable")[:n]
        out[label] = [
            {
                "x": int(coords[i, 0]),
                "y": int(coords[i, 1]),
                "score": float(sims[i, c]),
                "index": int(i),
            }
            for i in order
        ]
    return out


def zero_shot_slide(
    sf: SlideFeatures,
    weights: np.ndarray,
    labels: Sequence[str],
    logit_scale: float,
    poolings: Sequence[Pooling] = (*DEFAULT_KS, MEAN),
    headline: Pooling | None = None,
    n_top: int = 5,
    slide_id: str = "",
) -> SlideZeroShot:
    """Zero-shot one slide from its patch features and the class embeddings ``weights [C, D]``.

    ``headline`` (default: the first pooling) gives ``probs``; every pooling's scores are kept.
    """
    labels = list(labels)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape[0] != len(labels):
        raise InputError(f"{len(labels)} labels but {weights.shape[0]} class embeddings")
    if sf.features.shape[1] != weights.shape[1]:
        raise InputError(
            f"slide {slide_id or '?'}: features are {sf.features.shape[1]}-d but the model's "
            f"class embeddings are {weights.shape[1]}-d (features from another model?)"
        )
    sims = patch_similarities(sf.features, weights)
    poolings = list(poolings)
    headline = poolings[0] if headline is None else headline
    scores = {pooling_name(p): pool(sims, p).tolist() for p in poolings}
    if pooling_name(headline) not in scores:
        scores[pooling_name(headline)] = pool(sims, headline).tolist()
    head = np.asarray(scores[pooling_name(headline)])
    return SlideZeroShot(
        slide_id,
        labels,
        len(sf),
        pooling_name(headline),
        scores,
        softmax(logit_scale * head).tolist(),
        top_patches(sims, sf.coords, labels, n_top),
    )


def class_embeddings(encoder, prompts: Sequence[str], templates=None) -> np.ndarray:
    """Class embeddings ``[C, D]`` of the class prompts through the one engine (unit norm)."""
    return encoder.classifier(list(prompts), templates).float().cpu().numpy()


def cohort_scores(results: Sequence[SlideZeroShot], logit_scale: float) -> dict[str, np.ndarray]:
    """Per pooling name, the probabilities ``[n_slides, C]`` (softmax of the scaled scores)."""
    if not results:
        return {}
    names = list(results[0].scores)
    return {
        name: softmax(logit_scale * np.asarray([r.scores[name] for r in results], np.float64))
        for name in names
    }
