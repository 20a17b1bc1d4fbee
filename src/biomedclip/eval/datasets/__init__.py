"""Dataset adapters: each reads a public distribution format from ``--data-root``.

``load_dataset(name, data_root, split)`` for the named datasets of :data:`DATASETS`;
``image_folder``, ``table_dataset`` for your own data. Every adapter returns a
:class:`~.base.LabelledSet`; a missing or half-present dataset raises an
:class:`~biomedclip.errors.InputError` naming the file or folder it expected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, hash_split, split_set
from biomedclip.eval.datasets.folders import image_folder, lc25000, tcga_til
from biomedclip.eval.datasets.pcam import pcam
from biomedclip.eval.datasets.rsna import rsna_pneumonia
from biomedclip.eval.datasets.tables import table_dataset
from biomedclip.eval.datasets.vqa import slake, vqa_rad_organ

DATASETS: dict[str, Callable[[Path, str], LabelledSet]] = {
    "pcam": lambda root, split: pcam(root, split),
    "lc25000_lung": lambda root, split: lc25000(root, "lung", split),
    "lc25000_colon": lambda root, split: lc25000(root, "colon", split),
    "tcga_til": lambda root, split: tcga_til(root, split),
    "rsna_pneumonia": lambda root, split: rsna_pneumonia(root, split),
    "slake_modality": lambda root, split: slake(root, "modality", split),
    "slake_organ": lambda root, split: slake(root, "organ", split),
    "vqa_rad_organ": lambda root, split: vqa_rad_organ(root, split),
}


def load_dataset(name: str, data_root: str | Path, split: str = "test") -> LabelledSet:
    """A named dataset (see :data:`DATASETS`), a class-folder path, or a CSV/Parquet path."""
    if name in DATASETS:
        return DATASETS[name](Path(data_root), split)
    path = Path(name)
    if path.is_dir():
        return image_folder(path, split)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        return table_dataset(path, split)
    raise InputError(
        f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, an image folder with class "
        "sub-folders, or a CSV/Parquet table with path and label columns"
    )


__all__ = [
    "DATASETS",
    "LabelledSet",
    "hash_split",
    "image_folder",
    "lc25000",
    "load_dataset",
    "pcam",
    "rsna_pneumonia",
    "slake",
    "split_set",
    "table_dataset",
    "tcga_til",
    "vqa_rad_organ",
]
