"""Read an embedding dataset (``biomedclip embed`` output): Parquet parts + ``manifest.json``.

Columns: ``id`` (string), ``embedding`` (fixed-size list of float32/float16, L2-normalised) and
optional ``path``, ``text``, ``modality`` and extra metadata columns. The manifest says which model
made the vectors (``model``, ``model_sha256``), their dimension and whether they are normalised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from biomedclip.errors import InputError

EMBEDDING_COLUMN = "embedding"
ID_COLUMN = "id"


@dataclass
class EmbeddingManifest:
    """What ``manifest.json`` of an embedding dataset says about its vectors."""

    model: str | None
    model_sha256: str | None
    dim: int
    normalized: bool
    dtype: str
    count: int | None
    complete: bool | None = None  # False while `biomedclip embed` is still running or was stopped

    @classmethod
    def read(cls, directory: Path) -> EmbeddingManifest:
        path = directory / "manifest.json"
        if not path.is_file():
            raise InputError(f"{directory}: no manifest.json (not a `biomedclip embed` output)")
        try:
            d = json.loads(path.read_text())
            return cls(
                model=d.get("model"),
                model_sha256=d.get("model_sha256"),
                dim=int(d["dim"]),
                normalized=bool(d.get("normalized", False)),
                dtype=str(d.get("dtype", "float32")),
                count=d.get("count"),
                complete=d.get("complete"),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: unreadable embedding manifest ({e})") from e


@dataclass
class EmbeddingBatch:
    """A slice of an embedding dataset: unit vectors ``[n, dim]`` and their metadata rows."""

    vectors: np.ndarray  # float32, C-contiguous
    metadata: pa.Table  # every column except the embedding

    @property
    def ids(self) -> list[str]:
        return self.metadata.column(ID_COLUMN).to_pylist()


def part_files(directory: str | Path) -> list[Path]:
    """The files holding live rows, by the embedding store's rule (compacted parts, then batches
    not yet compacted), so an unfinished or interrupted embedding job is indexed consistently."""
    from biomedclip.embedding.store import part_files as live_files

    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: embeddings directory not found")
    parts = live_files(d)
    if not parts:
        raise InputError(f"{d}: no embedding files (part-*.parquet or batch-*.parquet)")
    return parts


def table_to_vectors(table: pa.Table, dim: int, source: object) -> np.ndarray:
    """The ``embedding`` column as a float32 ``[n, dim]`` array (float16 is widened)."""
    if EMBEDDING_COLUMN not in table.column_names:
        raise InputError(f"{source}: no {EMBEDDING_COLUMN!r} column")
    col = table.column(EMBEDDING_COLUMN).combine_chunks()
    if col.null_count:
        raise InputError(f"{source}: {col.null_count} null embedding(s)")
    if len(col) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    flat = col.flatten() if hasattr(col, "flatten") else pa.array(col).flatten()
    values = flat.to_numpy(zero_copy_only=False)
    if values.size != len(col) * dim:
        raise InputError(
            f"{source}: embedding length {values.size // max(len(col), 1)} != manifest dim {dim}"
        )
    return np.ascontiguousarray(values.reshape(len(col), dim), dtype=np.float32)


def iter_embeddings(directory: str | Path, batch_rows: int = 65536) -> Iterator[EmbeddingBatch]:
    """Stream an embedding dataset in batches of at most ``batch_rows`` rows, part by part."""
    import pyarrow.parquet as pq

    d = Path(directory)
    manifest = EmbeddingManifest.read(d)
    for part in part_files(d):
        pf = pq.ParquetFile(part)
        for rb in pf.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([rb])
            if ID_COLUMN not in table.column_names:
                raise InputError(f"{part}: no {ID_COLUMN!r} column")
            vectors = table_to_vectors(table, manifest.dim, part)
            meta = table.drop_columns([EMBEDDING_COLUMN])
            meta = meta.set_column(
                meta.schema.get_field_index(ID_COLUMN),
                ID_COLUMN,
                meta.column(ID_COLUMN).cast(pa.string()),
            )
            yield EmbeddingBatch(vectors, meta)


def read_embeddings(directory: str | Path) -> tuple[EmbeddingManifest, EmbeddingBatch]:
    """The whole dataset in memory: ``(manifest, EmbeddingBatch)``."""
    manifest = EmbeddingManifest.read(Path(directory))
    batches = list(iter_embeddings(directory))
    if not batches:
        return manifest, EmbeddingBatch(
            np.zeros((0, manifest.dim), np.float32),
            pa.table({ID_COLUMN: pa.array([], pa.string())}),
        )
    vectors = (
        np.concatenate([b.vectors for b in batches]) if len(batches) > 1 else batches[0].vectors
    )
    meta = pa.concat_tables([b.metadata for b in batches], promote_options="default")
    return manifest, EmbeddingBatch(vectors, meta)


def write_embeddings(
    directory: str | Path,
    ids: list[str],
    vectors: np.ndarray,
    model: str | None = None,
    model_sha256: str | None = None,
    dtype: str = "float32",
    metadata: dict[str, list[Any]] | None = None,
    rows_per_part: int = 100_000,
) -> Path:
    """Write vectors in the embedding-dataset layout (used by tests, benchmarks and examples)."""
    import pyarrow.parquet as pq

    from biomedclip.io_utils import atomic_open, atomic_write_json

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    np_dtype = np.float16 if dtype == "float16" else np.float32
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = (vectors / np.maximum(norms, 1e-12)).astype(np_dtype)
    value_type = pa.float16() if dtype == "float16" else pa.float32()
    for part, start in enumerate(range(0, max(n, 1), rows_per_part)):
        stop = min(start + rows_per_part, n)
        cols: dict[str, Any] = {ID_COLUMN: pa.array(ids[start:stop], pa.string())}
        for key, values in (metadata or {}).items():
            cols[key] = pa.array(values[start:stop])
        flat = pa.array(unit[start:stop].reshape(-1), type=value_type)
        cols[EMBEDDING_COLUMN] = pa.FixedSizeListArray.from_arrays(flat, dim)
        with atomic_open(d / f"part-{part:05d}.parquet") as f:
            pq.write_table(pa.table(cols), f)
    atomic_write_json(
        d / "manifest.json",
        {
            "model": model,
            "model_sha256": model_sha256,
            "dim": dim,
            "normalized": True,
            "dtype": dtype,
            "count": n,
        },
    )
    return d
