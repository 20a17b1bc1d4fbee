"""Metrics cross-checked against scikit-learn on the same predictions; bootstrap by seed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from biomedclip.eval.bootstrap import bootstrap_ci
from biomedclip.eval.metrics import (
    classification_batch,
    classification_metrics,
    confusion_matrix,
    multilabel_metrics,
    seed_mean_batch,
)
from biomedclip.eval.results import score_predictions


def predictions(n: int, c: int, seed: int, skill: float = 1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += skill  # better than chance, not perfect
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def manual_ece(y, p, n_bins=15):
    conf, correct = p.max(1), p.argmax(1) == y
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return total


@pytest.mark.parametrize("n_classes,seed", [(2, 0), (3, 1), (5, 2), (9, 3)])
def test_against_sklearn(n_classes, seed):
    y, p = predictions(300, n_classes, seed)
    pred = p.argmax(1)
    m = classification_metrics(y, p)
    assert m["acc1"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["mean_per_class_recall"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    want_auc = (
        skm.roc_auc_score(y, p[:, 1])
        if n_classes == 2
        else skm.roc_auc_score(y, p, multi_class="ovr")
    )
    assert m["auroc"] == pytest.approx(want_auc)
    want_top5 = 1.0 if n_classes <= 5 else skm.top_k_accuracy_score(y, p, k=5)
    assert m["acc5"] == pytest.approx(want_top5)
    assert m["ece"] == pytest.approx(manual_ece(y, p))
    np.testing.assert_array_equal(
        confusion_matrix(y, pred, n_classes), skm.confusion_matrix(y, pred)
    )


def test_missing_classes_and_ties_follow_sklearn():
    y = np.array([0, 0, 1, 1, 1, 3, 3])  # class 2 never true, sometimes predicted
    p = np.array([[.7, .1, .1, .1], [.1, .1, .7, .1], [.25, .25, .25, .25], [.1, .6, .2, .1],
                  [.1, .6, .2, .1], [.1, .1, .1, .7], [.4, .1, .1, .4]])  # fmt: skip
    pred = p.argmax(1)
    m = classification_metrics(y, p)
    assert m["mean_per_class_recall"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    present = [0, 1, 3]
    want = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in present])
    assert m["auroc"] == pytest.approx(want)  # ties: average ranks, as sklearn


def test_multilabel_auroc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 4))
    s = y + rng.normal(scale=1.2, size=y.shape)
    assert multilabel_metrics(y, s)["auroc"] == pytest.approx(
        skm.roc_auc_score(y, s, average="macro")
    )


def test_batch_rows_are_independent():
    y, p = predictions(50, 3, 7)
    rows = classification_batch(np.stack([y, y[::-1]]), np.stack([p, p[::-1]]))
    one = classification_metrics(y, p)
    for k, v in one.items():
        assert rows[k][0] == pytest.approx(v) and rows[k][1] == pytest.approx(v)


def test_seed_mean_is_the_mean_of_seeds():
    y, p1 = predictions(80, 3, 1)
    _, p2 = predictions(80, 3, 2)
    both = seed_mean_batch(y[None], np.stack([p1, p2], 1)[None])
    m1, m2 = classification_metrics(y, p1), classification_metrics(y, p2)
    for k in m1:
        assert both[k][0] == pytest.approx((m1[k] + m2[k]) / 2)


def test_bootstrap_reproducible_by_seed_and_brackets_the_estimate():
    y, p = predictions(400, 3, 4)
    a = bootstrap_ci(classification_batch, y, p, 500, seed=11)
    b = bootstrap_ci(classification_batch, y, p, 500, seed=11, max_elements=5000)  # other blocks
    c = bootstrap_ci(classification_batch, y, p, 500, seed=12)
    assert a == b and a != c
    point = classification_metrics(y, p)
    for name, (lo, hi) in a.items():
        assert lo <= point[name] <= hi, name
    lo, hi = a["acc1"]
    se = np.sqrt(point["acc1"] * (1 - point["acc1"]) / len(y))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)  # the normal-approximation width
    metrics, ci, details = score_predictions(y, p, 200, seed=3)
    assert metrics == pytest.approx(point) and set(ci) == set(point)
    assert np.asarray(details["confusion_matrix"]).sum() == 400
