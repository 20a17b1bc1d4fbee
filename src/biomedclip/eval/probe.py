"""Linear probe on frozen, normalised image features (the CLIP / clip_benchmark protocol).

Logistic regression (scikit-learn, L-BFGS, multinomial; one-vs-rest for multi-label sets). Its
inverse regularisation ``C`` is chosen as in CLIP (Radford et al. 2021, appendix A.3): a wide
logarithmic sweep (:data:`C_GRID`, 1e-6 .. 1e6, one point per decade) on the validation split,
then a refinement around the best value (:data:`REFINE_STEPS` points per side within one decade
of it, on a quarter-decade grid). Selection is on the *full* validation split by the dataset's
headline metric (:func:`selection_metric`: AUROC for TCGA-TIL and multi-label sets, accuracy
otherwise). Training fractions (1 %, 10 %, 100 %) subsample the training split only (stratified,
seeded, at least one image per class); the validation split stays whole. At 100 % the chosen
``C`` is refitted on train + val (CLIP); below 100 % the probe keeps to its subsample of train,
so a 1 % probe has seen 1 % of the training labels (val labels only choose ``C``). results.json
records the grid, every validation score, the chosen ``C`` and the selection metric.
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

C_GRID = tuple(float(c) for c in np.logspace(-6, 6, 13))
REFINE_STEPS = 3  # +-0.25, 0.5, 0.75 decades around the best grid point
FRACTIONS = (0.01, 0.1, 1.0)


@dataclass
class ProbeFit:
    C: float
    val_scores: dict[float, float]
    model: object
    metric: str = "acc1"
    grid: tuple[float, ...] = ()


def selection_metric(dataset: str | None, multilabel: bool = False) -> str:
    """The metric that picks ``C``: the dataset's headline metric."""
    if multilabel:
        return "auroc"
    from biomedclip.eval.protocol import PAPER_DATASETS

    spec = PAPER_DATASETS.get(dataset or "")
    return spec.metric if spec else "acc1"


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


def _val_score(y: np.ndarray, scores: np.ndarray, metric: str = "acc1") -> float:
    from biomedclip.eval.metrics import classification_metrics

    if y.ndim == 2:
        return multilabel_metrics(y, scores)["auroc"]
    if metric == "acc1":
        return float(np.mean(y == scores.argmax(1)))
    return classification_metrics(y, scores)[metric]


def refine_grid(best: float, steps: int = REFINE_STEPS) -> list[float]:
    """Quarter-decade points within ``steps / 4`` decades of ``best`` (``best`` excluded)."""
    e = np.log10(best)
    return [float(10 ** (e + d / 4)) for d in range(-steps, steps + 1) if d]


def fit_probe(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    grid: Sequence[float] = C_GRID,
    refit: bool = True,
    metric: str = "acc1",
    refine: bool = True,
) -> ProbeFit:
    """Sweep ``C`` over ``grid`` (then refined around the best) by ``metric`` on the validation
    items; fit the best on train (+ val if ``refit``)."""
    from threadpoolctl import threadpool_limits

    multilabel = y_train.ndim == 2
    scores: dict[float, float] = {}
    # one BLAS thread: these problems are small, and on a busy machine OpenBLAS threads spinning
    # against each other made a 420 x 512 fit 60x slower
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence warnings at extreme C are expected
        if len(np.unique(y_train, axis=0)) < 2:
            model = _ConstantModel(y_train, n_classes)
            return ProbeFit(float("nan"), {}, model, metric, tuple(grid))

        def sweep(values):
            m = None
            for C in sorted(values):
                if C in scores:
                    continue
                if multilabel or m is None:
                    m = _classifier(C, multilabel)
                if not multilabel:
                    m.set_params(C=C, warm_start=True)  # start from the previous C's solution
                m.fit(X_train, y_train)
                scores[C] = _val_score(y_val, predict_scores(m, X_val, n_classes), metric)

        def best_c():
            return max(scores, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -abs(np.log10(c))))

        sweep(grid)
        if refine:
            sweep(refine_grid(best_c()))
        best = best_c()
        X, y = (
            (np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]))
            if refit
            else (X_train, y_train)
        )
        return ProbeFit(
            best, scores, _classifier(best, multilabel).fit(X, y), metric, tuple(sorted(scores))
        )


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
    metric = selection_metric(test.dataset.name, test.labels.ndim == 2)
    out = []
    for frac in fractions:
        sub = stratified_subset(train.labels, frac, seed)
        fit = fit_probe(
            train.embeddings[sub], train.labels[sub], val.embeddings, val.labels,
            n_classes, grid, refit=frac >= 1, metric=metric,
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
                    "n_val": int(len(val.labels)),
                    "C": fit.C,
                    "selection_metric": fit.metric,
                    "selection_split": "val (all of it)",
                    "C_grid": list(grid),
                    "C_refined": [c for c in fit.grid if c not in set(grid)],
                    "val_scores": {f"{k:.6g}": v for k, v in sorted(fit.val_scores.items())},
                    "refit_on_train_plus_val": frac >= 1,
                    "seed": seed,
                    "dataset_notes": list(
                        dict.fromkeys(train.dataset.notes + val.dataset.notes + test.dataset.notes)
                    ),
                },
                ids=test.ids,
            )
        )
    return out
