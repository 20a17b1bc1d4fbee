"""The per-slide feature file: the one reader and writer of ``h5_files/<slide_id>.h5``.

The layout is the one CLAM and TRIDENT read: datasets ``features`` ``[N, D]`` (float32) and
``coords`` ``[N, 2]`` (int64, level-0 pixels of each patch's top-left corner), with the
extraction settings as attributes of the file (``patch_size``, ``patch_size_level0``,
``target_magnification`` / ``mpp``, ``model``, ``model_sha256``, ``preprocessing``, ...).
A Parquet copy (``parquet_files/<slide_id>.parquet``: columns ``x``, ``y`` and ``features`` as a
fixed-size list, the attributes as JSON in the schema metadata) is an option beside it.
Writes are atomic (temporary file + rename), so a file that exists is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_path

H5_DIR = "h5_files"
PARQUET_DIR = "parquet_files"
PARQUET_META_KEY = b"biomedclip.slide"


@dataclass
class SlideFeatures:
    """One slide's patch features and level-0 coordinates plus the extraction attributes."""

    features: np.ndarray  # [N, D] float32
    coords: np.ndarray  # [N, 2] int64, level-0 (x, y)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2)
        if self.features.ndim != 2 or len(self.features) != len(self.coords):
            raise InputError(
                f"features {self.features.shape} and coords {self.coords.shape} do not match"
            )

    def __len__(self) -> int:
        return len(self.features)


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the slide extra
        raise InputError("slide feature files need h5py: pip install 'biomedclip[slide]'") from e
    return h5py


def _attr_value(v: Any) -> Any:
    """HDF5 attributes take numbers and strings; anything else is stored as JSON text."""
    if v is None:
        return "null"
    if isinstance(v, (bool, int, float, str, np.integer, np.floating)):
        return v
    return json.dumps(v)


def h5_path(out_dir: str | Path, slide_id: str) -> Path:
    return Path(out_dir) / H5_DIR / f"{slide_id}.h5"


def parquet_path(out_dir: str | Path, slide_id: str) -> Path:
    return Path(out_dir) / PARQUET_DIR / f"{slide_id}.parquet"


def write_h5(path: str | Path, sf: SlideFeatures) -> Path:
    """Write ``sf`` to ``path`` atomically (CLAM / TRIDENT layout)."""
    h5py = _h5py()
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=sf.features)
        f.create_dataset("coords", data=sf.coords)
        for k, v in sf.attrs.items():
            f.attrs[k] = _attr_value(v)
    return path


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and v[:1] in ("{", "[") or v == "null":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def read_h5(path: str | Path) -> SlideFeatures:
    """Read a feature file (ours, or any CLAM / TRIDENT file with ``features`` + ``coords``)."""
    h5py = _h5py()
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "features" not in f or "coords" not in f:
                raise InputError(f"{path}: not a slide feature file (needs 'features', 'coords')")
            feats = np.asarray(f["features"])
            coords = np.asarray(f["coords"])
            attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
    except OSError as e:
        raise InputError(f"{path}: cannot read the feature file ({e})") from e
    if feats.ndim == 3 and feats.shape[0] == 1:  # TRIDENT / CLAM batch axis
        feats, coords = feats[0], coords.reshape(-1, 2)
    return SlideFeatures(feats, coords, attrs)


def write_parquet(path: str | Path, sf: SlideFeatures) -> Path:
    """The Parquet option: one row per patch (``x``, ``y``, ``features``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = sf.features.shape[1]
    flat = pa.array(sf.features.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "x": pa.array(sf.coords[:, 0]),
            "y": pa.array(sf.coords[:, 1]),
            "features": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    meta = {PARQUET_META_KEY: json.dumps(sf.attrs, default=str).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_parquet(path: str | Path) -> SlideFeatures:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    n = table.num_rows
    col = table.column("features").combine_chunks()
    dim = col.type.list_size
    feats = col.values.to_numpy(zero_copy_only=False).reshape(n, dim)
    coords = np.stack([table.column("x").to_numpy(), table.column("y").to_numpy()], axis=1)
    raw = (table.schema.metadata or {}).get(PARQUET_META_KEY)
    return SlideFeatures(feats, coords, json.loads(raw) if raw else {})


def read_features(path: str | Path) -> SlideFeatures:
    """Read an ``.h5`` or ``.parquet`` feature file by its suffix."""
    p = Path(path)
    return read_parquet(p) if p.suffix == ".parquet" else read_h5(p)
