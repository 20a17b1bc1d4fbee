"""Class-folder datasets: a generic image folder, LC25000 (lung, colon) and TCGA-TIL tiles.

* generic: ``ROOT/<class>/**/<image>`` (any depth below the class folder).
* LC25000 (Borkowski et al. 2019), as downloaded: ``lung_colon_image_set/lung_image_sets/
  {lung_aca,lung_n,lung_scc}`` and ``.../colon_image_sets/{colon_aca,colon_n}``; the class
  folders directly under ``--data-root`` (or under ``lc25000_lung/`` / ``lc25000_colon/``) are
  found too. No official split: :func:`~.base.hash_split`.
* TCGA-TIL (Saltz et al. 2018 / Abousamra et al. 2022 tiles): every ``til-negative`` and
  ``til-positive`` folder anywhere below ``tcga_til/`` (one pair per cancer type), else a plain
  class-folder layout. No official split: :func:`~.base.hash_split`, grouped by patient
  (the TCGA barcode in the tile's path) and near-duplicate tiles.

Sets without an official split are grouped before splitting (:mod:`.groups`): flips, 90-degree
rotations and small crops of one source image stay in one split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import SPLITS, LabelledSet, hash_split, require_dir, split_set
from biomedclip.eval.datasets.groups import assign_groups

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm", ".dicom",
    ".nii", ".gz", ".svs", ".ndpi",
}  # fmt: skip

LC25000_CLASSES = {
    "lung": ("lung_aca", "lung_n", "lung_scc"),
    "colon": ("colon_aca", "colon_n"),
}
TIL_CLASSES = ("til-negative", "til-positive")


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _collect(name: str, folders: Sequence[tuple[str, Sequence[Path]]], root: Path, classes):
    index = {c: i for i, c in enumerate(classes)}
    ids, labels, paths = [], [], []
    for cls, dirs in folders:
        found = [p for d in dirs for p in _images_under(d)]
        if not found:
            raise InputError(f"{name}: class folder(s) {', '.join(map(str, dirs))} hold no images")
        for p in found:
            ids.append(str(p.relative_to(root)))
            labels.append(index[cls])
            paths.append(p)
    return ids, np.asarray(labels, np.int64), paths


def from_class_folders(
    name: str,
    folders: Sequence[tuple[str, Sequence[Path]]],
    root: Path,
    split: str = "all",
    seed: int = 0,
    patients: bool = False,
    near_duplicates: bool = True,
) -> LabelledSet:
    """A set from ``(class, [folders])``; ids are paths relative to ``root``. Without an official
    split the items are grouped (near-duplicates; TCGA patients with ``patients``) and then
    hash-split, so no group straddles two splits."""
    classes = [c for c, _ in folders]
    ids, labels, paths = _collect(name, folders, root, classes)
    full = LabelledSet(name, "all", classes, ids, labels, paths, root=root)
    if split != "all":
        assign_groups(full, patient=patients, images=near_duplicates)
    return split_set(full, split, seed)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def split_folders(root: Path, name: str, split: str, seed: int = 0) -> LabelledSet:
    """``ROOT/{train,val,test}/<class>/``: one class list for every split (the union of the class
    folders, sorted); a split's folder is honoured exactly. Without ``val/`` a stratified,
    seeded, near-duplicate-grouped 1/8 of ``train/`` becomes val (and leaves train); a class
    found in ``test/`` (or ``val/``) but never in ``train/`` is an error."""
    present = [s for s in SPLITS if (root / s).is_dir()]
    classes = sorted({c for s in present for c in _class_dirs(root / s)})
    if not classes:
        raise InputError(f"{name}: {root}/{{{','.join(present)}}} hold no class sub-folders")
    train_classes = set(_class_dirs(root / "train")) if "train" in present else set()
    if train_classes:
        for s in present:
            orphan = sorted(set(_class_dirs(root / s)) - train_classes)
            if orphan:
                raise InputError(
                    f"{name}: class(es) {orphan} in {root / s} but not in {root / 'train'}: a "
                    "classifier cannot be trained or scored on a class it never saw"
                )
    splits = ["train", "val", "test"] if split == "all" else [split]
    if any(s not in SPLITS for s in splits):
        raise InputError(f"{name}: unknown split {split!r} (use train, val, test or all)")
    parts = []
    for s in splits:
        carve = s in ("train", "val") and "val" not in present and "train" in present
        folder = root / ("train" if carve else s)
        if not folder.is_dir():
            raise InputError(f"{name}: expected folder {folder} not found")
        folders = [(c, [folder / c]) for c in classes if (folder / c).is_dir()]
        ids, labels, paths = _collect(name, folders, root, classes)
        ds = LabelledSet(name, s, list(classes), ids, labels, paths, root=root)
        if carve:
            assign_groups(ds)
            pos = hash_split(ds.ids, ds.labels, (7 / 8, 1 / 8, 0.0), seed, ds.groups)
            keep = pos["val"] if s == "val" else pos["train"]
            ds = ds.subset(keep, s)
            ds.notes.append(
                f"no val/ folder: val is a stratified, seeded (seed {seed}) 1/8 of train/, "
                f"grouped by near-duplicates ({len(set(ds.groups or []))} groups in this split), "
                "and is left out of train"
            )
        else:
            ds.notes.append(f"split given by the folder {folder}")
        parts.append(ds)
    if len(parts) == 1:
        return parts[0]
    ids = [i for d in parts for i in d.ids]
    labels = np.concatenate([d.labels for d in parts])
    paths = [p for d in parts for p in d.paths]
    return LabelledSet(name, "all", list(classes), ids, labels, paths, root=root)


def image_folder(
    root: str | Path, split: str = "all", name: str | None = None, seed: int = 0
) -> LabelledSet:
    """``ROOT/<class>/...`` class sub-folders (sorted by name), or the split layout
    ``ROOT/{train,val,test}/<class>/`` (see :func:`split_folders`) when ``train/`` or ``test/``
    is present."""
    root = require_dir(Path(root), name or str(root))
    name = name or root.name
    if (root / "train").is_dir() or (root / "test").is_dir():
        return split_folders(root, name, split, seed)
    classes = _class_dirs(root)
    if not classes:
        raise InputError(f"{name}: {root} has no class sub-folders (expected ROOT/<class>/<image>)")
    return from_class_folders(name, [(c, [root / c]) for c in classes], root, split, seed)


def _find_class_dirs(candidates: Sequence[Path], classes: Sequence[str]) -> Path | None:
    """The first candidate holding any of ``classes``; an error if it holds only some of them."""
    for base in candidates:
        present = [c for c in classes if (base / c).is_dir()]
        if present and len(present) < len(classes):
            missing = [str(base / c) for c in classes if c not in present]
            raise InputError(f"half-present dataset: expected folder(s) {', '.join(missing)}")
        if present:
            return base
    return None


def lc25000(
    data_root: str | Path, organ: str = "lung", split: str = "all", seed: int = 0
) -> LabelledSet:
    """LC25000 lung (3 classes) or colon (2 classes) from its download layout under ``data_root``."""
    if organ not in LC25000_CLASSES:
        raise InputError(f"LC25000 organ {organ!r}: use lung or colon")
    root = Path(data_root)
    classes = LC25000_CLASSES[organ]
    sets = f"{organ}_image_sets"
    candidates = [
        root,
        root / f"lc25000_{organ}",
        root / sets,
        root / "lung_colon_image_set" / sets,
        root / "LC25000" / "lung_colon_image_set" / sets,
        root / "lc25000" / "lung_colon_image_set" / sets,
    ]
    base = _find_class_dirs(candidates, classes)
    name = f"lc25000_{organ}"
    if base is None:
        raise InputError(
            f"{name}: expected folder {candidates[3] / classes[0]} (or {classes[0]}/ ... directly "
            f"under {root}) not found"
        )
    return from_class_folders(name, [(c, [base / c]) for c in classes], base, split, seed)


def tcga_til(data_root: str | Path, split: str = "all", seed: int = 0) -> LabelledSet:
    """TCGA-TIL tiles: all ``til-negative`` / ``til-positive`` folders below ``tcga_til/``."""
    root = Path(data_root)
    base = next((b for b in (root / "tcga_til", root / "TCGA-TIL") if b.is_dir()), None)
    if base is None:
        raise InputError(f"tcga_til: expected folder {root / 'tcga_til'} not found")
    groups = {c: sorted(d for d in base.rglob(c) if d.is_dir()) for c in TIL_CLASSES}
    if not any(groups.values()):
        raise InputError(
            f"tcga_til: expected folders {base}/**/til-negative and til-positive not found"
        )
    for c, dirs in groups.items():
        if not dirs:
            raise InputError(f"tcga_til: half-present dataset, no {c} folder below {base}")
    return from_class_folders("tcga_til", list(groups.items()), base, split, seed, patients=True)
