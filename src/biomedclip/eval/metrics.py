"""Classification metrics, computed for a batch of resamples at once (so 1,000 bootstrap
resamples cost a few numpy calls), on ``y [B, n]`` and scores ``[B, n, C]``.

Definitions follow scikit-learn (the tests cross-check them on the same predictions):
``mean_per_class_recall`` (balanced accuracy) = mean recall over the classes present in ``y``;
``macro_f1`` = unweighted mean F1 over the classes present in ``y`` or the predictions;
``auroc`` = binary ROC AUC (positive class 1), or the unweighted one-vs-rest mean over classes
present in ``y`` (ties get average ranks); ``acc5`` = top-5 accuracy, a class tied with the true
one counted at its expected place under a random order of the tied classes (so a constant
predictor scores min(5, C) / C, not 100 %); ``ece`` = expected calibration error of the top-1
confidence in ``n_bins`` equal-width bins (Guo et al. 2017). Names follow clip_benchmark where it
has one (``acc1``, ``acc5``, ``mean_per_class_recall``).

Peer metrics, as other papers report them: ``kappa`` (Cohen's kappa), ``kappa_quadratic``
(quadratic-weighted kappa, for ordered classes such as grades), ``weighted_f1`` (F1 per class
weighted by its support), ``auroc_ovo`` (one-vs-one macro AUROC, Hand & Till 2001: the mean over
class pairs of the two pairwise AUROCs, as ``roc_auc_score(multi_class="ovo")``). Multi-label:
``map`` (macro average precision, step-wise as scikit-learn's) and ``auroc`` (macro).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

N_BINS = 15


def _auc_rows(pos: np.ndarray, score: np.ndarray, member: np.ndarray | None = None) -> np.ndarray:
    """Binary AUROC per row of ``pos [B, n]`` (0/1) and ``score [B, n]`` (Mann-Whitney); NaN
    where a row has one class only. ``member [B, n]`` (bool): only those items count."""
    if member is not None:
        # non-members rank above every member, so members' ranks are their ranks among members
        score = np.where(member, score, np.inf)
        pos = pos * member
    ranks = rankdata(score, axis=1)
    n_pos = pos.sum(1)
    n_neg = (pos.shape[1] if member is None else member.sum(1)) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def confusion_batch(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[B, C, C]`` counts (rows: true class, columns: predicted)."""
    b = np.arange(y.shape[0])[:, None] * n_classes * n_classes
    flat = np.bincount((b + y * n_classes + pred).ravel(), minlength=y.shape[0] * n_classes**2)
    return flat.reshape(y.shape[0], n_classes, n_classes)


def classification_batch(
    y: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS
) -> dict[str, np.ndarray]:
    """Every single-label metric for each of the ``B`` rows: ``name -> [B]``."""
    n_rows, n, n_classes = probs.shape
    pred = probs.argmax(-1)
    true_score = np.take_along_axis(probs, y[..., None], -1)
    higher = (probs > true_score).sum(-1)
    tied = (probs == true_score).sum(-1) - 1
    cm = confusion_batch(y, pred, n_classes)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    support, predicted = cm.sum(2), cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        if n_classes == 2:
            auroc = _auc_rows((y == 1).astype(float), probs[..., 1])
        else:
            per_class = np.stack(
                [_auc_rows((y == c).astype(float), probs[..., c]) for c in range(n_classes)], 1
            )
            present = np.isfinite(per_class)
            auroc = np.where(
                present.any(1), np.nansum(per_class, 1) / np.maximum(present.sum(1), 1), np.nan
            )
    # peer metrics
    n_f = float(n)
    rows, cols = support.astype(float), predicted.astype(float)
    expected = rows[:, :, None] * cols[:, None, :] / n_f  # [B, C, C]
    po = tp.sum(1) / n_f
    pe = (rows * cols).sum(1) / n_f**2
    idx = np.arange(n_classes)
    w = ((idx[:, None] - idx[None, :]) ** 2 / max(1, n_classes - 1) ** 2)[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (po - pe) / (1 - pe)
        kappa_q = 1 - (w * cm).sum((1, 2)) / (w * expected).sum((1, 2))
        weighted_f1 = np.nansum(np.nan_to_num(f1) * support, 1) / support.sum(1)
        if n_classes == 2:
            auroc_ovo = auroc
        else:
            pairs = []
            for a in range(n_classes):
                for b in range(a + 1, n_classes):
                    member = (y == a) | (y == b)
                    s_ab = _auc_rows((y == a).astype(float), probs[..., a], member)
                    s_ba = _auc_rows((y == b).astype(float), probs[..., b], member)
                    pairs.append((s_ab + s_ba) / 2)
            pair = np.stack(pairs, 1)
            ok = np.isfinite(pair)
            auroc_ovo = np.where(ok.any(1), np.nansum(pair, 1) / np.maximum(ok.sum(1), 1), np.nan)
    conf = probs.max(-1)
    correct = (pred == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    idx = (np.arange(n_rows)[:, None] * n_bins + bins).ravel()
    size = n_rows * n_bins
    gap = np.bincount(idx, correct.ravel(), size) - np.bincount(idx, conf.ravel(), size)
    return {
        "acc1": correct.mean(1),
        "acc5": np.clip((5 - higher) / (tied + 1), 0, 1).mean(1),
        "mean_per_class_recall": np.nanmean(recall, 1),
        "macro_f1": np.nanmean(f1, 1),
        "auroc": auroc,
        "ece": np.abs(gap.reshape(n_rows, n_bins)).sum(1) / n,
        "kappa": kappa,
        "kappa_quadratic": kappa_q,
        "weighted_f1": weighted_f1,
        "auroc_ovo": auroc_ovo,
    }


def _ap_rows(pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision per row (scikit-learn's step-wise definition: tied scores form one
    threshold); NaN where a row has no positive."""
    order = np.argsort(-score, axis=1, kind="stable")
    s = np.take_along_axis(score, order, 1)
    p = np.take_along_axis(pos, order, 1).astype(float)
    tp = np.cumsum(p, 1)
    k = np.arange(1, pos.shape[1] + 1)[None]
    # the last index of each run of tied scores is a threshold
    last = np.ones_like(s, dtype=bool)
    last[:, :-1] = s[:, :-1] != s[:, 1:]
    n_pos = pos.sum(1)
    prec = tp / k
    # recall increment at each threshold = positives in the run / n_pos
    tp_at = np.where(last, tp, np.nan)
    prev = np.zeros_like(tp)
    for r in range(tp.shape[0]):
        t = tp_at[r]
        vals = t[last[r]]
        prev_vals = np.concatenate([[0.0], vals[:-1]])
        prev[r, last[r]] = prev_vals
    gain = np.where(last, tp - prev, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (gain * prec).sum(1) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def multilabel_batch(y: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Macro AUROC and mAP over label columns for each row: ``y``/``scores`` ``[B, n, L]``."""
    per_label = np.stack(
        [_auc_rows(y[..., c].astype(float), scores[..., c]) for c in range(y.shape[-1])], 1
    )
    present = np.isfinite(per_label)
    with np.errstate(invalid="ignore"):
        auroc = np.where(
            present.any(1), np.nansum(per_label, 1) / np.maximum(present.sum(1), 1), np.nan
        )
        aps = np.stack(
            [_ap_rows(y[..., c].astype(float), scores[..., c]) for c in range(y.shape[-1])], 1
        )
        ok = np.isfinite(aps)
        mean_ap = np.where(ok.any(1), np.nansum(aps, 1) / np.maximum(ok.sum(1), 1), np.nan)
    return {"auroc": auroc, "map": mean_ap}


def seed_mean_batch(y: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of ``S`` predictions of the same items (``probs [B, n, S, C]``), averaged over S."""
    n_rows, n, n_seeds, n_classes = probs.shape
    flat = classification_batch(
        np.repeat(y, n_seeds, axis=0), probs.transpose(0, 2, 1, 3).reshape(-1, n, n_classes)
    )
    return {k: v.reshape(n_rows, n_seeds).mean(1) for k, v in flat.items()}


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The scalar metrics of one prediction (``y [n]``, ``probs [n, C]``)."""
    return {k: float(v[0]) for k, v in classification_batch(y[None], probs[None]).items()}


def multilabel_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {k: float(v[0]) for k, v in multilabel_batch(y[None], scores[None]).items()}


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    return confusion_batch(y[None], pred[None], n_classes)[0]


def reliability(y: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count (for the reliability diagram)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    out: dict[str, list] = {"bin_lower": [], "count": [], "confidence": [], "accuracy": []}
    for b in range(n_bins):
        m = bins == b
        out["bin_lower"].append(b / n_bins)
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else None)
        out["accuracy"].append(float(correct[m].mean()) if m.any() else None)
    return out
