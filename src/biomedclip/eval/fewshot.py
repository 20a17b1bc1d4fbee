"""Few-shot linear probes: k in {1, 2, 4, 8, 16} images per class, over several seeds.

Per (k, seed): k training images per class are drawn from the train split and k per class from
the validation split; ``C`` is swept on those k validation shots and the probe is trained on the
k training shots only (so a k-shot result has seen 2k labels per class, never more). Results are
the mean +- std over seeds; the bootstrap interval (over test items) is that of the seed mean.
The learned-prompt alternative is :mod:`biomedclip.eval.coop`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.features import Features
from biomedclip.eval.metrics import classification_metrics
from biomedclip.eval.probe import C_GRID, fit_probe, predict_scores
from biomedclip.eval.results import EvalResult, score_predictions

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (0, 1, 2)


def sample_shots(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded positions of ``k`` items per class (all of a class when it has fewer)."""
    strata = y.argmax(1) if y.ndim == 2 else y
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(strata):
        members = np.flatnonzero(strata == c)
        picked.append(rng.choice(members, min(k, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def few_shot_probs(
    train: Features, val: Features, test: Features, k: int, seed: int, grid=C_GRID
) -> tuple[np.ndarray, float]:
    """Test probabilities ``[N, C]`` of one k-shot probe, and the chosen ``C``."""
    n_classes = len(test.dataset.classes)
    tr = sample_shots(train.labels, k, seed)
    va = sample_shots(val.labels, k, seed + 10_000)
    fit = fit_probe(
        train.embeddings[tr], train.labels[tr], val.embeddings[va], val.labels[va],
        n_classes, grid, refit=False,
    )  # fmt: skip
    return predict_scores(fit.model, test.embeddings, n_classes), fit.C


def summarise_seeds(
    dataset, task, model_name, test: Features, per_seed: list[np.ndarray], settings: dict,
    n_resamples: int, seed: int,
) -> EvalResult:  # fmt: skip
    """Mean +- std over seeds of the test metrics, with the bootstrap interval of the mean."""
    stacked = np.stack(per_seed, axis=1)  # [N, S, C]
    metrics, ci, _ = score_predictions(test.labels, stacked, n_resamples, seed)
    runs = [classification_metrics(test.labels, p) for p in per_seed]
    for name in list(metrics):
        metrics[f"{name}_std"] = (
            float(np.std([r[name] for r in runs], ddof=1)) if len(runs) > 1 else 0.0
        )
    return EvalResult(
        dataset.name, task, model_name, metrics, ci, dataset.split, len(test.positions),
        list(dataset.classes), test.failures, {"per_seed": runs}, test.labels,
        np.mean(stacked, axis=1), settings=settings,
    )  # fmt: skip


def few_shot(
    train: Features,
    val: Features,
    test: Features,
    shots: Sequence[int] = SHOTS,
    seeds: Sequence[int] = SEEDS,
    model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
    grid: Sequence[float] = C_GRID,
) -> list[EvalResult]:
    """One :class:`EvalResult` per k (``task="few_shot"``): mean and ``*_std`` over ``seeds``."""
    if test.labels.ndim == 2:
        raise ValueError("few-shot sampling needs a single-label set")
    out = []
    for k in shots:
        per_seed, cs = [], []
        for s in seeds:
            probs, C = few_shot_probs(train, val, test, k, s, grid)
            per_seed.append(probs)
            cs.append(C)
        settings = {"k": k, "seeds": list(seeds), "C": cs, "method": "linear-probe"}
        out.append(
            summarise_seeds(
                test.dataset,
                "few_shot",
                model_name,
                test,
                per_seed,
                settings,
                n_resamples,
                seeds[0],
            )
        )
    return out
