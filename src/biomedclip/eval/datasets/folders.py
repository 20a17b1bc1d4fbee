"""Class-folder datasets: a generic image folder, LC25000 (lung, colon) and TCGA-TIL tiles.

* generic: ``ROOT/<class>/**/<image>`` (any depth below the class folder).
* LC25000 (Borkowski et al. 2019), as downloaded: ``lung_colon_image_set/lung_image_sets/
  {lung_aca,lung_n,lung_scc}`` and ``.../colon_image_sets/{colon_aca,colon_n}``; the class
  folders directly under ``--data-root`` (or under ``lc25000_lung/`` / ``lc25000_colon/``) are
  found too. No official split: :func:`~.base.hash_split`.
* TCGA-TIL (Saltz et al. 2018 / Abousamra et al. 2022 tiles): every ``til-negative`` and
  ``til-positive`` folder anywhere below ``tcga_til/`` (one pair per cancer type), else a plain
  class-folder layout. No official split: :func:`~.base.hash_split`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, require_dir, split_set

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


def from_class_folders(
    name: str,
    folders: Sequence[tuple[str, Sequence[Path]]],
    root: Path,
    split: str = "all",
    seed: int = 0,
) -> LabelledSet:
    """A set from ``(class, [folders])``; ids are paths relative to ``root``."""
    ids, labels, paths = [], [], []
    for label, (_cls, dirs) in enumerate(folders):
        found = [p for d in dirs for p in _images_under(d)]
        if not found:
            raise InputError(f"{name}: class folder(s) {', '.join(map(str, dirs))} hold no images")
        for p in found:
            ids.append(str(p.relative_to(root)))
            labels.append(label)
            paths.append(p)
    full = LabelledSet(
        name, "all", [c for c, _ in folders], ids, np.asarray(labels, np.int64), paths, root=root
    )
    return split_set(full, split, seed)


def image_folder(
    root: str | Path, split: str = "all", name: str | None = None, seed: int = 0
) -> LabelledSet:
    """``ROOT/<class>/...`` class sub-folders (sorted by name); ``ROOT/{train,val,test}/<class>``
    is used as the official split when present."""
    root = require_dir(Path(root), name or str(root))
    name = name or root.name
    if split in ("train", "val", "test") and (root / split).is_dir():
        sub = root / split
        classes = sorted(d.name for d in sub.iterdir() if d.is_dir())
        full = from_class_folders(name, [(c, [sub / c]) for c in classes], root, "all")
        full.split = split
        return full
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
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
    return from_class_folders("tcga_til", list(groups.items()), base, split, seed)
