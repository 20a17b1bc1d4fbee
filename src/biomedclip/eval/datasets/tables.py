"""A CSV / TSV / Parquet table with an image path column and label column(s), read by the
project's one table reader (:func:`biomedclip.tables.read_table`, its column convention).

* image paths: the table reader's path column (``path``, ``image``, ``filepath`` ...), relative
  to the table's folder unless absolute.
* one ``label`` column: single-label; with ``label_sep`` (e.g. ``"|"``) a multi-label set whose
  classes are every label seen; several label columns (``label_cols=["effusion", "edema"]``,
  values 0/1): a multi-label set with those classes.
* an optional ``split`` column (train / val / test) is the official split, honoured exactly;
  else :func:`~.base.hash_split`, by groups of ``group_col`` (``--group-by``, e.g. a patient
  id) when given, so a group never straddles two splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, require_file, split_set
from biomedclip.eval.datasets.groups import column_groups
from biomedclip.tables import read_table


def _cell(value) -> str:
    return "" if value is None else str(value).strip()


def table_dataset(
    table: str | Path,
    split: str = "all",
    path_col: str | None = None,
    label_cols: Sequence[str] = ("label",),
    label_sep: str | None = None,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    seed: int = 0,
    group_col: str | None = None,
) -> LabelledSet:
    """A labelled set from a table (see the module docstring for the columns)."""
    path = require_file(Path(table), name or str(table))
    name = name or path.stem
    t = read_table(path, path_column=path_col)
    if t.path_column is None:
        raise InputError(f"{path}: no image path column (columns: {', '.join(t.columns)})")
    missing = [c for c in label_cols if c not in t.columns]
    if missing:
        raise InputError(f"{path}: label column(s) {missing} not found (columns: {t.columns})")
    rows = [r for r in t.rows if r.path]
    if not rows:
        raise InputError(f"{path}: no rows with an image path")
    paths = [Path(r.path) for r in rows]
    ids = [r.image.strip() for r in rows]
    if len(label_cols) > 1:
        classes = list(label_cols)
        try:
            labels = np.asarray(
                [[float(_cell(r.meta[c]) or 0) > 0 for c in label_cols] for r in rows], np.int64
            )
        except ValueError as e:
            raise InputError(f"{path}: label columns must hold 0/1 ({e})") from e
    else:
        raw = [_cell(r.meta[label_cols[0]]) for r in rows]
        empty = [r.index for r, v in zip(rows, raw) if not v]
        if empty:
            raise InputError(f"{path}, data row {empty[0] + 1}: empty label")
        if label_sep:
            sets = [[x.strip() for x in v.split(label_sep) if x.strip()] for v in raw]
            classes = list(classes or sorted({x for s in sets for x in s}))
            index = {c: i for i, c in enumerate(classes)}
            labels = np.zeros((len(sets), len(classes)), np.int64)
            for r, s in enumerate(sets):
                for x in s:
                    if x not in index:
                        raise InputError(f"{path}, data row {r + 1}: label {x!r} not a class")
                    labels[r, index[x]] = 1
        else:
            classes = list(classes or sorted(set(raw)))
            index = {c: i for i, c in enumerate(classes)}
            unknown = sorted(set(raw) - set(index))
            if unknown:
                raise InputError(f"{path}: labels {unknown} not among the classes {classes}")
            labels = np.asarray([index[v] for v in raw], np.int64)
    full = LabelledSet(name, "all", classes, ids, labels, paths, root=path.parent)
    if group_col is not None:
        if group_col not in t.columns:
            raise InputError(f"{path}: --group-by column {group_col!r} not found ({t.columns})")
        full.groups = column_groups([_cell(r.meta[group_col]) for r in rows], group_col, path)
    if "split" in t.columns and split in ("train", "val", "test"):
        pos = [i for i, r in enumerate(rows) if _cell(r.meta.get("split")) == split]
        if not pos:
            raise InputError(f"{path}: no rows with split == {split!r}")
        return full.subset(pos, split)
    return split_set(full, split, seed)
