"""Linear probe on frozen, normalised image features (the ELEVATER / clip_benchmark protocol).

Logistic regression (scikit-learn, L-BFGS, multinomial) with its inverse regularisation ``C``
swept over :data:`C_GRID` on the validation split; the best ``C`` is refitted on train + val and
scored on the test split. Run at 1 %, 10 % and 100 % of the training data: the same stratified,
seeded fraction of the train and of the validation items (at least one per class each), so a 1 %
probe never sees more than ~1 % of the labels. Multi-label sets use one-vs-rest. The sweep warm-starts
each ``C`` from the previous solution (increasing ``C``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.features import Features
from biomedclip.eval.metrics import multilabel_metrics
from biomedclip.eval.results import EvalResult, score_predictions

C_GRID = tuple(float(c) for c in np.logspace(-2, 4, 7))
FRACTIONS = (0.01, 0.1, 1.0)


@dataclass
class ProbeFit:
    C: float
    val_scores: dict[float, float]
    model: object


def _classifier(C: float, multilabel: bool):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=1000, tol=1e-4)
    if multilabel:
        from sklearn.multiclass import OneVsRestClassifier

        return OneVsRestClassifier(lr)
    return lr


def predict_scores(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``[N, C]`` probabilities (columns for classes unseen in training are 0)."""
    probs = model.predict_proba(X)
    classes = getattr(model, "classes_", np.arange(probs.shape[1]))
    if probs.shape[1] == n_classes:
        return probs
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(classes, int)] = probs
    return out


def _val_score(y: np.ndarray, scores: np.ndarray) -> float:
    return (
        multilabel_metrics(y, scores)["auroc"]
        if y.ndim == 2
        else float(np.mean(y == scores.argmax(1)))
    )


def fit_probe(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    grid: Sequence[float] = C_GRID,
    refit: bool = True,
) -> ProbeFit:
    """Sweep ``C`` on the validation items, then refit the best on train + val (if ``refit``)."""
    from threadpoolctl import threadpool_limits

    multilabel = y_train.ndim == 2
    scores: dict[float, float] = {}
    # one BLAS thread: these problems are small, and on a busy machine OpenBLAS threads spinning
    # against each other made a 420 x 512 fit 60x slower
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence warnings at extreme C are expected
        if len(np.unique(y_train, axis=0)) < 2:
            model = _ConstantModel(y_train, n_classes)
            return ProbeFit(float("nan"), {}, model)
        m = _classifier(min(grid), multilabel)
        for C in sorted(grid):
            if multilabel:
                m = _classifier(C, multilabel)
            else:
                m.set_params(C=C, warm_start=True)  # start from the previous C's solution
            m.fit(X_train, y_train)
            scores[C] = _val_score(y_val, predict_scores(m, X_val, n_classes))
        best = max(grid, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -abs(np.log10(c))))
        X, y = (
            (np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
            if refit
            else (X_train, y_train)
        )
        return ProbeFit(best, scores, _classifier(best, multilabel).fit(X, y))


class _ConstantModel:
    """A 'probe' trained on one class only: always predicts it (so tiny fractions still score)."""

    def __init__(self, y: np.ndarray, n_classes: int):
        self.classes_ = np.arange(n_classes)
        self.p = np.zeros(n_classes)
        if y.ndim == 2:
            self.p = y.mean(0)
        else:
            self.p[int(y[0])] = 1.0

    def predict_proba(self, X):
        return np.tile(self.p, (len(X), 1))


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Seeded positions of ``fraction`` of the items of each class (at least one per class)."""
    if fraction >= 1:
        return np.arange(len(y))
    strata = y.argmax(1) if y.ndim == 2 else y
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(strata):
        members = np.flatnonzero(strata == c)
        n = max(1, int(round(fraction * len(members))))
        picked.append(rng.choice(members, n, replace=False))
    return np.sort(np.concatenate(picked))


def linear_probe(
    train: Features,
    val: Features,
    test: Features,
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    model_name: str = "",
    grid: Sequence[float] = C_GRID,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> list[EvalResult]:
    """One :class:`EvalResult` per training fraction (``task="linear_probe"``)."""
    n_classes = len(test.dataset.classes)
    out = []
    for frac in fractions:
        sub = stratified_subset(train.labels, frac, seed)
        vsub = stratified_subset(val.labels, frac, seed + 1)
        fit = fit_probe(
            train.embeddings[sub], train.labels[sub], val.embeddings[vsub], val.labels[vsub],
            n_classes, grid,
        )  # fmt: skip
        probs = predict_scores(fit.model, test.embeddings, n_classes)
        metrics, ci, details = score_predictions(test.labels, probs, n_resamples, seed)
        out.append(
            EvalResult(
                test.dataset.name,
                "linear_probe",
                model_name,
                metrics,
                ci,
                test.dataset.split,
                len(test.positions),
                list(test.dataset.classes),
                train.failures + val.failures + test.failures,
                details,
                test.labels,
                probs,
                settings={
                    "train_fraction": frac,
                    "n_train": int(len(sub)),
                    "n_val": int(len(vsub)),
                    "C": fit.C,
                    "val_scores": {str(k): v for k, v in fit.val_scores.items()},
                    "seed": seed,
                },
            )
        )
    return out
