"""RSNA Pneumonia Detection Challenge (2018) as downloaded from Kaggle: one label per patient.

Expected under ``--data-root`` (or ``rsna_pneumonia/`` or ``rsna-pneumonia-detection-challenge/``
below it): ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``: one row per box,
or one row with ``Target=0``) and ``stage_2_train_images/<patientId>.dcm`` (``stage_1_*`` names
are accepted too). A patient is ``pneumonia`` when any of its rows has ``Target=1``. DICOMs are
decoded by the project's reader (:mod:`biomedclip.imaging`, windowing from the file). The test
labels were never released, so the split is :func:`~.base.hash_split` by patient id.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, require_dir, split_set

CLASSES = ("normal", "pneumonia")
FOLDERS = ("", "rsna_pneumonia", "rsna-pneumonia-detection-challenge")


def _locate(root: Path) -> tuple[Path, Path]:
    for sub in FOLDERS:
        base = root / sub if sub else root
        for stage in ("stage_2", "stage_1"):
            labels = base / f"{stage}_train_labels.csv"
            if labels.is_file():
                images = require_dir(base / f"{stage}_train_images", "rsna_pneumonia")
                return labels, images
    raise InputError(
        f"rsna_pneumonia: expected file {root / 'stage_2_train_labels.csv'} not found "
        f"(also looked in {', '.join(s for s in FOLDERS if s)})"
    )


def read_patient_labels(labels_csv: Path) -> dict[str, int]:
    """``patientId -> 0/1`` (1 when any row of the patient has ``Target == 1``)."""
    out: dict[str, int] = {}
    with open(labels_csv, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"patientId", "Target"} <= set(reader.fieldnames or ()):
            raise InputError(f"{labels_csv}: needs patientId and Target columns")
        for line, row in enumerate(reader, start=2):
            pid, target = (row["patientId"] or "").strip(), (row["Target"] or "").strip()
            if not pid or target not in ("0", "1"):
                raise InputError(
                    f"{labels_csv}, line {line}: bad patientId/Target {pid!r}/{target!r}"
                )
            out[pid] = max(out.get(pid, 0), int(target))
    if not out:
        raise InputError(f"{labels_csv}: no rows")
    return out


def rsna_pneumonia(data_root: str | Path, split: str = "test", seed: int = 0) -> LabelledSet:
    """Patients with their DICOM; a patient whose ``.dcm`` is missing is an error naming it."""
    labels_csv, images = _locate(Path(data_root))
    patients = read_patient_labels(labels_csv)
    ids = sorted(patients)
    paths = [images / f"{pid}.dcm" for pid in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"rsna_pneumonia: {len(missing)} of {len(paths)} DICOM files listed in {labels_csv} "
            f"are missing (first: expected file {missing[0]})"
        )
    labels = np.asarray([patients[pid] for pid in ids], np.int64)
    full = LabelledSet("rsna_pneumonia", "all", list(CLASSES), ids, labels, paths, root=images)
    return split_set(full, split, seed)
