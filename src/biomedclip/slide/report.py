"""The cohort table: slide-level zero-shot under each pooling and the cross-validated slide
classifiers, side by side (balanced accuracy, weighted F1, AUROC with bootstrap CIs; for the
trained models also the per-fold mean ± std)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biomedclip.slide.features_file import SlideFeatures
from biomedclip.slide.labelled import LabelledCohort, slide_metrics
from biomedclip.slide.zeroshot import (
    DEFAULT_KS,
    MEAN,
    Pooling,
    SlideZeroShot,
    cohort_scores,
    zero_shot_slide,
)

METHOD_NAMES = {"abmil": "ABMIL", "meanpool-lr": "mean-pool + LR"}


def zero_shot_cohort(
    cohort: LabelledCohort,
    bags: Sequence[SlideFeatures],
    weights: np.ndarray,
    logit_scale: float,
    poolings: Sequence[Pooling] = (*DEFAULT_KS, MEAN),
    n_resamples: int = 1000,
    seed: int = 0,
    n_top: int = 5,
) -> tuple[list[dict[str, Any]], list[SlideZeroShot]]:
    """One row per pooling (metrics with CIs) and the per-slide results. ``weights`` are the
    class embeddings in the order of ``cohort.classes``."""
    results = [
        zero_shot_slide(
            b, weights, cohort.classes, logit_scale, poolings, n_top=n_top, slide_id=sid
        )  # fmt: skip
        for sid, b in zip(cohort.slide_ids, bags)
    ]
    rows = []
    for name, probs in cohort_scores(results, logit_scale).items():
        rows.append(
            {
                "method": f"zero-shot {name}",
                "kind": "zero-shot",
                "pooling": name,
                "metrics": slide_metrics(cohort.y, probs, n_resamples, seed),
            }
        )
    return rows, results


def cv_rows(summary: dict) -> list[dict[str, Any]]:
    """Rows of a cross-validation summary (:func:`biomedclip.slide.crossval.cross_validate`)."""
    rows = []
    for name, m in summary["models"].items():
        rows.append(
            {
                "method": f"{METHOD_NAMES.get(name, name)} ({summary['folds']}-fold CV)",
                "kind": "trained",
                "model": name,
                "metrics": m["pooled"],
                "folds": {k: m[k] for k in ("balanced_accuracy", "auroc")},
            }
        )
    return rows


def _fmt(m: dict[str, float]) -> str:
    v, lo, hi = m["value"], m["ci_low"], m["ci_high"]
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{v:.3f}"


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Printable cells: method, balanced accuracy, weighted F1, AUROC (value [95% CI]), and the
    per-fold mean ± std of balanced accuracy / AUROC for trained models."""
    out = []
    for r in rows:
        m = r["metrics"]
        folds = r.get("folds")
        per_fold = (
            f"{folds['balanced_accuracy']['mean']:.3f} ± {folds['balanced_accuracy']['std']:.3f}"
            f" / {folds['auroc']['mean']:.3f} ± {folds['auroc']['std']:.3f}"
            if folds
            else ""
        )
        out.append(
            [
                r["method"],
                _fmt(m["balanced_accuracy"]),
                _fmt(m["weighted_f1"]),
                _fmt(m["auroc"]),
                per_fold,
            ]  # fmt: skip
        )
    return out


HEADERS = ["method", "balanced acc [95% CI]", "weighted F1 [95% CI]", "AUROC [95% CI]",
           "per fold: bal. acc / AUROC (mean ± std)"]  # fmt: skip


def markdown(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    lines = [f"## {title}", ""] if title else []
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines) + "\n"
