"""Few-shot linear probes: k in {1, 2, 4, 8, 16} images per class, over several seeds.

Per (k, seed): k training images per class are drawn from the train split, and the probe sees
those k x C labels only. ``C`` is chosen on the k shots themselves, as in few-shot CLIP
evaluations that have no validation labels to spare: stratified ``min(k, 5)``-fold
cross-validation over the sweep of :func:`~.probe.fit_probe` (1e-6 .. 1e6, refined) for k >= 2,
selected by the dataset's headline metric; at k = 1 no fold holds every class, so ``C`` is fixed
at :data:`ONE_SHOT_C` (1.0, scikit-learn's default: on unit-norm features it keeps the two
class means well apart without fitting noise). Results are the mean +- std over seeds; the
bootstrap interval (over test items) is that of the seed mean. The learned-prompt alternative is
:mod:`biomedclip.eval.coop`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.features import Features
from biomedclip.eval.metrics import classification_metrics
from biomedclip.eval.probe import (
    C_GRID,
    _classifier,
    _val_score,
    predict_scores,
    refine_grid,
    selection_metric,
)
from biomedclip.eval.results import EvalResult, score_predictions

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (0, 1, 2)
ONE_SHOT_C = 1.0


def sample_shots(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded positions of ``k`` items per class (all of a class when it has fewer)."""
    strata = y.argmax(1) if y.ndim == 2 else y
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(strata):
        members = np.flatnonzero(strata == c)
        picked.append(rng.choice(members, min(k, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def cv_select_c(
    X: np.ndarray, y: np.ndarray, n_classes: int, grid=C_GRID, metric: str = "acc1", seed: int = 0
) -> tuple[float, dict[float, float]]:
    """``C`` by stratified k-fold cross-validation on the shots (k = min(shots per class, 5)),
    over ``grid`` then refined around the best; ties go to the C nearest 1."""
    import warnings

    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    k = int(min(np.bincount(y, minlength=n_classes)[np.unique(y)].min(), 5))
    folds = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y))
    scores: dict[float, float] = {}

    def sweep(values):
        for C in values:
            if C in scores:
                continue
            fold_scores = []
            for tr, va in folds:
                m = _classifier(C, False).fit(X[tr], y[tr])
                fold_scores.append(_val_score(y[va], predict_scores(m, X[va], n_classes), metric))
            scores[C] = float(np.nanmean(fold_scores))

    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        sweep(grid)
        best = lambda: max(scores, key=lambda c: (scores[c], -abs(np.log10(c))))  # noqa: E731
        sweep(refine_grid(best()))
        return best(), scores


def few_shot_probs(
    train: Features, test: Features, k: int, seed: int, grid=C_GRID
) -> tuple[np.ndarray, float]:
    """Test probabilities ``[N, C]`` of one k-shot probe, and the chosen ``C``."""
    import warnings

    from threadpoolctl import threadpool_limits

    n_classes = len(test.dataset.classes)
    tr = sample_shots(train.labels, k, seed)
    X, y = train.embeddings[tr], train.labels[tr]
    metric = selection_metric(test.dataset.name)
    if k >= 2:
        C, _ = cv_select_c(X, y, n_classes, grid, metric, seed)
    else:
        C = ONE_SHOT_C
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model = _classifier(C, False).fit(X, y)
    return predict_scores(model, test.embeddings, n_classes), C


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
            probs, C = few_shot_probs(train, test, k, s, grid)
            per_seed.append(probs)
            cs.append(C)
        settings = {
            "k": k, "seeds": list(seeds), "C": cs, "method": "linear-probe",
            "selection": (f"{min(k, 5)}-fold CV on the shots by {selection_metric(test.dataset.name)}"
                          if k >= 2 else f"fixed C = {ONE_SHOT_C} (k = 1)"),
            "C_grid": list(grid),
        }  # fmt: skip
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
