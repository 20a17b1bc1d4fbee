"""PatchCamelyon (Veeling et al. 2018) from its public HDF5 files, read lazily with h5py.

Expected under ``--data-root`` (or ``--data-root/pcam``), decompressed (the download is ``.h5.gz``):
``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``; ``x`` holds ``[N, 96, 96, 3]`` uint8
patches, ``y`` ``[N, 1, 1, 1]`` labels (1 = the centre 32x32 px holds metastatic tumour tissue).
Only the patches of the batch being encoded are read from disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, require_file

CLASSES = ("normal", "tumor")
SPLIT_NAMES = {"train": "train", "val": "valid", "test": "test"}


def pcam_files(data_root: str | Path, split: str) -> tuple[Path, Path]:
    if split not in SPLIT_NAMES:
        raise InputError(f"pcam: unknown split {split!r} (use train, val or test)")
    root = Path(data_root)
    base = root / "pcam" if (root / "pcam").is_dir() else root
    out = []
    for part in ("x", "y"):
        path = base / f"camelyonpatch_level_2_split_{SPLIT_NAMES[split]}_{part}.h5"
        hint = "decompress the .h5.gz download first" if path.with_suffix(".h5.gz").exists() else ""
        out.append(require_file(path, "pcam", hint))
    return out[0], out[1]


class _PatchReader:
    """Reads patches by position from the ``x`` file (opened per call: safe across processes)."""

    def __init__(self, x_path: Path):
        self.x_path = x_path

    def __call__(self, positions: Sequence[int]) -> list:
        import h5py
        from PIL import Image

        pos = np.asarray(positions, dtype=np.int64)
        order = np.argsort(pos)
        with h5py.File(self.x_path, "r") as f:
            patches = f["x"][pos[order]]  # h5py wants increasing indices
        out: list = [None] * len(pos)
        for j, k in enumerate(order):
            out[k] = Image.fromarray(np.ascontiguousarray(patches[j]))
        return out


def pcam(data_root: str | Path, split: str = "test") -> LabelledSet:
    """One PCam split (``train``/``val``/``test``); images come lazily from the ``x`` file."""
    import h5py

    x_path, y_path = pcam_files(data_root, split)
    try:
        with h5py.File(y_path, "r") as f:
            y = np.asarray(f["y"][:]).reshape(-1).astype(np.int64)
        with h5py.File(x_path, "r") as f:
            shape = f["x"].shape
    except (OSError, KeyError) as e:
        raise InputError(f"pcam: cannot read {x_path} / {y_path}: {e}") from e
    if len(shape) != 4 or shape[0] != len(y):
        raise InputError(f"pcam: {x_path} holds {shape}, {y_path} {len(y)} labels: they must match")
    if not set(np.unique(y)) <= {0, 1}:
        raise InputError(f"pcam: {y_path} holds labels other than 0/1")
    h = hashlib.sha256()
    for p in (x_path, y_path):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(y.tobytes())
    ds = LabelledSet(
        "pcam",
        split,
        list(CLASSES),
        [f"{SPLIT_NAMES[split]}:{i}" for i in range(len(y))],
        y,
        loader=_PatchReader(x_path),
        root=x_path.parent,
    )
    ds._fingerprint = h.hexdigest()
    return ds
