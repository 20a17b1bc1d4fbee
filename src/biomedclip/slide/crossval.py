"""Patient-grouped stratified k-fold cross-validation of the slide classifiers, resumable per fold.

Folds: scikit-learn's ``StratifiedGroupKFold`` over patients (seeded); no patient is in two test
folds or in a fold's training and test slides at once (checked, not assumed). Inside each training
fold a stratified, patient-grouped validation split (``hash_split`` of :mod:`biomedclip.eval`)
drives early stopping (ABMIL) and the choice of ``C`` (mean-pool + LR); the test fold is never
looked at. Each finished fold is one atomic file ``RUN/folds/fold_<i>.json`` (its predictions and
metrics; the ABMIL weights in ``RUN/models/fold_<i>.safetensors``): a rerun skips finished folds.
``RUN/predictions.csv`` and ``RUN/summary.json`` are written at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_write_json, atomic_write_text
from biomedclip.slide.labelled import LabelledCohort, slide_metrics
from biomedclip.slide.mil import (
    MILConfig,
    predict_meanpool_lr,
    predict_mil,
    save_mil,
    train_meanpool_lr,
    train_mil,
)

MODELS = ("abmil", "meanpool-lr")
FOLD_METRICS = ("balanced_accuracy", "auroc")


@dataclass
class CVConfig:
    folds: int = 5
    seed: int = 0
    val_fraction: float = 0.2
    models: tuple[str, ...] = MODELS
    mil: MILConfig = field(default_factory=MILConfig)

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODELS)
        if unknown:
            raise InputError(f"unknown models {sorted(unknown)}: choose from {list(MODELS)}")
        if self.folds < 2:
            raise InputError(f"--folds {self.folds}: need at least 2")
        if not 0 < self.val_fraction < 0.5:
            raise InputError(f"validation fraction {self.val_fraction}: must be in (0, 0.5)")


def patient_folds(y: np.ndarray, patients: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
    """Test positions of each of ``k`` folds, stratified by label and grouped by patient."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y)
    for c in np.unique(y):
        n = len({p for p, t in zip(patients, y) if t == c})
        if n < k:
            raise InputError(f"class {int(c)} has {n} patients: too few for {k} folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [test for _, test in splitter.split(np.zeros(len(y)), y, groups=list(patients))]
    check_grouped(folds, patients)
    return folds


def check_grouped(folds: Sequence[np.ndarray], patients: Sequence[str]) -> None:
    """Every slide is tested once, and no patient's slides fall in two folds."""
    seen: dict[str, int] = {}
    tested = np.concatenate(folds)
    if sorted(tested.tolist()) != list(range(len(patients))):
        raise RuntimeError("cross-validation folds do not test every slide exactly once")
    for f, test in enumerate(folds):
        for i in test:
            other = seen.setdefault(patients[i], f)
            if other != f:
                raise RuntimeError(f"patient {patients[i]!r} is in folds {other} and {f}")


def inner_split(cohort: LabelledCohort, train: np.ndarray, fraction: float, seed: int):
    """(training, validation) positions inside a training fold: stratified, patient-grouped."""
    from biomedclip.eval.datasets.base import hash_split

    sub = cohort.subset(train)
    parts = hash_split(sub.slide_ids, sub.y, (1 - fraction, fraction, 0.0), seed, sub.patients)
    tr, va = train[parts["train"]], train[parts["val"]]
    if not len(va) or len(np.unique(cohort.y[va])) < 2:
        # too few patients per class for a stratified share: one patient of each class
        picked: set[int] = set()
        for c in np.unique(cohort.y[train]):
            pid = next(cohort.patients[i] for i in train if cohort.y[i] == c)
            picked |= {int(i) for i in train if cohort.patients[i] == pid}
        va = np.asarray(sorted(picked), int)
        tr = np.asarray([i for i in train if int(i) not in picked], int)
    if set(cohort.patients[i] for i in tr) & set(cohort.patients[i] for i in va):
        raise RuntimeError("a patient is in both the training and the validation slides")
    return tr, va


def fingerprint(cohort: LabelledCohort, cfg: CVConfig) -> str:
    doc = {
        "slides": cohort.slide_ids,
        "labels": cohort.labels,
        "patients": cohort.patients,
        "classes": cohort.classes,
        "cfg": asdict(cfg),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()[:16]


def fold_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    from biomedclip.eval.metrics import classification_batch

    m = classification_batch(np.asarray(y)[None], np.asarray(probs)[None])
    return {"balanced_accuracy": float(m["mean_per_class_recall"][0]),
            "auroc": float(m["auroc"][0])}  # fmt: skip


def run_fold(cohort, bags, f: int, test: np.ndarray, cfg: CVConfig, run_dir: Path) -> dict:
    y = cohort.y
    train = np.setdiff1d(np.arange(len(cohort)), test)
    if set(cohort.patients[i] for i in train) & set(cohort.patients[i] for i in test):
        raise RuntimeError(f"fold {f}: a patient is in both the training and the test slides")
    tr, va = inner_split(cohort, train, cfg.val_fraction, cfg.seed + f)
    feats = [b.features for b in bags]
    pick = lambda idx: [feats[i] for i in idx]  # noqa: E731
    out: dict = {
        "fold": f,
        "test": [cohort.slide_ids[i] for i in test],
        "validation": [cohort.slide_ids[i] for i in va],
        "n_train": len(tr),
        "models": {},
    }
    for name in cfg.models:
        if name == "abmil":
            mil_cfg = MILConfig(**{**asdict(cfg.mil), "seed": cfg.mil.seed + f})
            model, hist = train_mil(pick(tr), y[tr], pick(va), y[va], len(cohort.classes), mil_cfg)
            probs = predict_mil(model, pick(test))
            weights = save_mil(model, run_dir / "models" / f"fold_{f}.safetensors", mil_cfg,
                               cohort.classes)  # fmt: skip
            extra = {"best_epoch": hist["best_epoch"], "epochs": hist["epochs"],
                     "weights": str(weights.relative_to(run_dir))}  # fmt: skip
        else:
            clf, c = train_meanpool_lr(pick(tr), y[tr], pick(va), y[va], seed=cfg.seed)
            probs = predict_meanpool_lr(clf, pick(test), len(cohort.classes))
            extra = {"C": c}
        out["models"][name] = {
            "probs": probs.round(8).tolist(),
            "metrics": fold_metrics(y[test], probs),
            **extra,
        }
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def cross_validate(
    cohort: LabelledCohort,
    bags: Sequence,
    run_dir: str | Path,
    cfg: CVConfig | None = None,
    n_resamples: int = 1000,
    progress: Callable[[int, int, bool], None] | None = None,
) -> dict:
    """Run (or resume) the cross-validation; returns the summary also written to
    ``RUN/summary.json``: per model the per-fold metrics, their mean ± sample std, and the
    metrics of the pooled out-of-fold predictions with bootstrap CIs."""
    cfg = cfg or CVConfig()
    run_dir = Path(run_dir)
    fp = fingerprint(cohort, cfg)
    folds = patient_folds(cohort.y, cohort.patients, cfg.folds, cfg.seed)
    results = []
    for f, test in enumerate(folds):
        path = run_dir / "folds" / f"fold_{f}.json"
        done = None
        if path.is_file():
            done = json.loads(path.read_text())
            if done.get("fingerprint") != fp:
                raise InputError(
                    f"{run_dir}: holds folds of another cohort or configuration; "
                    "use a new output folder"
                )
        if done is None:
            done = {"fingerprint": fp, **run_fold(cohort, bags, f, test, cfg, run_dir)}
            atomic_write_json(path, done)
        if progress:
            progress(f, len(folds), path.is_file())
        results.append(done)
    summary = summarise(cohort, results, cfg, n_resamples)
    atomic_write_text(run_dir / "predictions.csv", predictions_csv(cohort, results, cfg))
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def summarise(cohort: LabelledCohort, results: list[dict], cfg: CVConfig, n_resamples: int) -> dict:
    index = {s: i for i, s in enumerate(cohort.slide_ids)}
    y = cohort.y
    models = {}
    for name in cfg.models:
        per_fold = [r["models"][name]["metrics"] for r in results]
        oof = np.zeros((len(cohort), len(cohort.classes)))
        for r in results:
            for sid, p in zip(r["test"], r["models"][name]["probs"]):
                oof[index[sid]] = p
        models[name] = {
            "folds": per_fold,
            **{m: _mean_std([f[m] for f in per_fold]) for m in FOLD_METRICS},
            "pooled": slide_metrics(y, oof, n_resamples, cfg.seed),
        }
    return {
        "cohort": cohort.source,
        "slides": len(cohort),
        "patients": len(set(cohort.patients)),
        "classes": cohort.classes,
        "folds": cfg.folds,
        "seed": cfg.seed,
        "models": models,
    }


def predictions_csv(cohort: LabelledCohort, results: list[dict], cfg: CVConfig) -> str:
    index = {s: i for i, s in enumerate(cohort.slide_ids)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["slide_id", "patient_id", "label", "fold", "model", "prediction",
                *[f"prob_{c}" for c in cohort.classes]])  # fmt: skip
    for r in results:
        for name in cfg.models:
            for sid, p in zip(r["test"], r["models"][name]["probs"]):
                i = index[sid]
                w.writerow([sid, cohort.patients[i], cohort.labels[i], r["fold"], name,
                            cohort.classes[int(np.argmax(p))], *[f"{v:.6f}" for v in p]])  # fmt: skip
    return buf.getvalue()
