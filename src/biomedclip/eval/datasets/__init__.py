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

# (data_root, split, seed) -> set; the seed seeds the hash split of sets without an official one
DATASETS: dict[str, Callable[[Path, str, int], LabelledSet]] = {
    "pcam": lambda root, split, seed: pcam(root, split),
    "lc25000_lung": lambda root, split, seed: lc25000(root, "lung", split, seed),
    "lc25000_colon": lambda root, split, seed: lc25000(root, "colon", split, seed),
    "tcga_til": lambda root, split, seed: tcga_til(root, split, seed),
    "rsna_pneumonia": lambda root, split, seed: rsna_pneumonia(root, split, seed),
    "slake_modality": lambda root, split, seed: slake(root, "modality", split),
    "slake_organ": lambda root, split, seed: slake(root, "organ", split),
    "vqa_rad_organ": lambda root, split, seed: vqa_rad_organ(root, split, seed),
}


def load_dataset(
    name: str, data_root: str | Path, split: str = "test", seed: int = 0,
    group_by: str | None = None,
) -> LabelledSet:  # fmt: skip
    """A named dataset (see :data:`DATASETS`), a class-folder path, or a CSV/Parquet path.

    ``seed`` seeds the split of sets without an official one; ``group_by``: a table column whose
    values must not straddle splits (e.g. a patient id)."""
    if group_by is not None and not (
        Path(name).is_file() and Path(name).suffix.lower() in (".csv", ".tsv", ".parquet", ".pq")
    ):
        raise InputError(f"--group-by {group_by}: only for CSV/Parquet tables, not {name}")
    if name in DATASETS:
        return DATASETS[name](Path(data_root), split, seed)
    path = Path(name)
    if path.is_dir():
        return image_folder(path, split, seed=seed)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        return table_dataset(path, split, seed=seed, group_col=group_by)
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
