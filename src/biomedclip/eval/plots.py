"""PNG plots of evaluation results (matplotlib, Agg): confusion matrix, ROC curves, reliability
diagram, few-shot curve (metric vs k with error bars)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.eval.results import EvalResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from biomedclip.io_utils import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def confusion_plot(r: EvalResult, path: Path) -> Path:
    plt = _plt()
    cm = np.asarray(r.details["confusion_matrix"], float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(r.classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * n, 1.0 + 0.6 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)  # fmt: skip
    ax.set_xticks(range(n), r.classes, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), r.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{r.dataset}: {r.task}", fontsize=9)
    return _save(fig, path)


def roc_curves(y: np.ndarray, scores: np.ndarray) -> list[tuple[str | int, np.ndarray, np.ndarray]]:
    """``(class, fpr, tpr)`` per class (only class 1 for binary tasks)."""
    from sklearn.metrics import roc_curve

    classes = [1] if scores.shape[1] == 2 else range(scores.shape[1])
    out = []
    for c in classes:
        yc = (y == c) if y.ndim == 1 else y[:, c]
        if 0 < yc.sum() < len(yc):
            fpr, tpr, _ = roc_curve(yc, scores[:, c])
            out.append((c, fpr, tpr))
    return out


def roc_plot(r: EvalResult, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    for c, fpr, tpr in roc_curves(r.y, r.scores):
        ax.plot(fpr, tpr, label=str(r.classes[c]))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(
        f"{r.dataset}: ROC (AUROC {100 * r.metrics.get('auroc', float('nan')):.1f})", fontsize=9
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def reliability_plot(r: EvalResult, path: Path) -> Path:
    plt = _plt()
    rel = r.details["reliability"]
    width = 1 / len(rel["bin_lower"])
    acc = np.nan_to_num(np.asarray(rel["accuracy"], float))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(rel["bin_lower"], acc, width=width, align="edge", edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{r.dataset}: reliability (ECE {100 * r.metrics['ece']:.1f})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def few_shot_plot(results: Sequence[EvalResult], path: Path, metric: str = "acc1",
                  reference: dict[str, float] | None = None) -> Path:  # fmt: skip
    """Metric vs k (log2 axis) with std error bars, one line per method; ``reference`` draws
    horizontal lines (e.g. zero-shot, full linear probe)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for task in sorted({r.task for r in results}):
        rs = sorted((r for r in results if r.task == task), key=lambda r: r.settings["k"])
        ks = [r.settings["k"] for r in rs]
        ax.errorbar(ks, [100 * r.metrics[metric] for r in rs],
                    yerr=[100 * r.metrics.get(f"{metric}_std", 0) for r in rs],
                    marker="o", capsize=3, label=task.replace("_", " "))  # fmt: skip
    for name, value in (reference or {}).items():
        ax.axhline(100 * value, ls="--", lw=0.9, color="gray")
        ax.text(1, 100 * value, f" {name}", fontsize=7, va="bottom", color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shots per class (k)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{results[0].dataset}: few-shot", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_result(r: EvalResult, out_dir: Path, stem: str) -> list[Path]:
    """Every plot that applies to one result (confusion, ROC, reliability)."""
    paths = []
    if "confusion_matrix" in r.details:
        paths.append(confusion_plot(r, out_dir / f"{stem}-confusion.png"))
        paths.append(reliability_plot(r, out_dir / f"{stem}-reliability.png"))
    if r.y is not None and r.scores is not None and r.scores.ndim == 2:
        paths.append(roc_plot(r, out_dir / f"{stem}-roc.png"))
    return paths
