"""A labelled cohort: the table of slides (``slide_id, label[, patient_id]``), their feature files,
and the slide-level metrics (balanced accuracy, weighted F1, AUROC) with bootstrap CIs.

The CSV is read by :func:`biomedclip.tables.read_table` (``slide_id`` is read as text, so ``007``
stays ``007``). A slide without a patient id is its own patient. Classes are the sorted label
values unless given; for two classes the second is the positive one for AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.slide.features_file import SlideFeatures, h5_path, parquet_path, read_features

PATIENT_COLUMNS = ("patient_id", "patient", "case_id", "case")
HEADLINE = {"balanced_accuracy": "mean_per_class_recall", "weighted_f1": "weighted_f1",
            "auroc": "auroc"}  # fmt: skip


@dataclass
class LabelledCohort:
    """Slides with one label each; ``y`` indexes ``classes``; ``patients`` group the slides."""

    slide_ids: list[str]
    labels: list[str]
    patients: list[str]
    classes: list[str]
    source: str = ""

    @property
    def y(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index[label] for label in self.labels], np.int64)

    def __len__(self) -> int:
        return len(self.slide_ids)

    def subset(self, positions: Sequence[int]) -> LabelledCohort:
        pos = list(positions)
        return LabelledCohort(
            [self.slide_ids[i] for i in pos],
            [self.labels[i] for i in pos],
            [self.patients[i] for i in pos],
            list(self.classes),
            self.source,
        )


def _cell(v) -> str:
    return "" if v is None else str(v).strip()


def read_labelled_cohort(path: str | Path, classes: Sequence[str] | None = None) -> LabelledCohort:
    """Read ``slide_id, label[, patient_id]`` (CSV, TSV or Parquet); every problem names the row."""
    from biomedclip.tables import read_table

    table = read_table(path, id_column="slide_id")
    cols = {c.strip().lower(): c for c in table.columns}
    if "label" not in cols:
        raise InputError(f"{path}: no 'label' column (columns: {', '.join(table.columns)})")
    label_col = cols["label"]
    patient_col = next((cols[c] for c in PATIENT_COLUMNS if c in cols), None)
    ids, labels, patients = [], [], []
    for row in table.rows:
        where = f"{path}, data row {row.index + 1}"
        sid, label = _cell(row.id), _cell(row.meta.get(label_col))
        if not sid:
            raise InputError(f"{where}: empty slide_id")
        if not label:
            raise InputError(f"{where}: slide {sid!r} has no label")
        ids.append(sid)
        labels.append(label)
        pid = _cell(row.meta.get(patient_col)) if patient_col else ""
        patients.append(pid or f"slide:{sid}")
    dupes = sorted({s for s in ids if ids.count(s) > 1})
    if dupes:
        raise InputError(f"{path}: slide ids listed twice: {dupes[:5]}")
    if not ids:
        raise InputError(f"{path}: the cohort is empty")
    found = sorted(set(labels))
    if classes:
        classes = list(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(f"{path}: labels {unknown} are not among the classes {classes}")
    else:
        classes = found
    if len(classes) < 2:
        raise InputError(f"{path}: needs at least two classes (found {classes})")
    return LabelledCohort(ids, labels, patients, list(classes), str(path))


def feature_path(features_dir: str | Path, slide_id: str) -> Path:
    """``DIR/h5_files/<id>.h5`` (or the Parquet copy); an error names the slide when neither is."""
    for p in (h5_path(features_dir, slide_id), parquet_path(features_dir, slide_id)):
        if p.is_file():
            return p
    raise InputError(
        f"slide {slide_id!r}: no feature file {h5_path(features_dir, slide_id)} "
        "(run `biomedclip slide features` first)"
    )


def load_bags(cohort: LabelledCohort, features_dir: str | Path) -> list[SlideFeatures]:
    """Every slide's features; all missing or unreadable files are named in one error."""
    bags, problems = [], []
    for sid in cohort.slide_ids:
        try:
            bags.append(read_features(feature_path(features_dir, sid)))
        except InputError as e:
            problems.append(str(e))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(f"{len(problems)} feature files missing or unreadable: "
                         + "; ".join(problems[:5]) + more)  # fmt: skip
    dims = {b.features.shape[1] for b in bags}
    if len(dims) > 1:
        raise InputError(f"feature files of different widths {sorted(dims)}: mixed models?")
    empty = [s for s, b in zip(cohort.slide_ids, bags) if len(b) == 0]
    if empty:
        raise InputError(f"slides with no patches: {empty[:5]}")
    return bags


def _headline_batch(y: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    from biomedclip.eval.metrics import classification_batch

    m = classification_batch(y, probs)
    return {name: m[key] for name, key in HEADLINE.items()}


def slide_metrics(
    y: np.ndarray, probs: np.ndarray, n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{"balanced_accuracy" | "weighted_f1" | "auroc": {"value", "ci_low", "ci_high"}}``
    (percentile bootstrap over slides, :func:`biomedclip.eval.bootstrap.bootstrap_ci`)."""
    from biomedclip.eval.bootstrap import bootstrap_ci

    y = np.asarray(y, np.int64)
    probs = np.asarray(probs, np.float64)
    point = {k: float(v[0]) for k, v in _headline_batch(y[None], probs[None]).items()}
    ci = bootstrap_ci(_headline_batch, y, probs, n_resamples=n_resamples, seed=seed)
    nan = (float("nan"), float("nan"))
    return {
        k: {"value": v, "ci_low": ci.get(k, nan)[0], "ci_high": ci.get(k, nan)[1]}
        for k, v in point.items()
    }
