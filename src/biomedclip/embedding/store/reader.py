"""Reading a dataset: streamed in batches, whole, or just its metadata columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip.embedding.store.layout import DatasetManifest, part_files
from biomedclip.errors import InputError


@dataclass
class EmbeddingBatch:
    """A slice of a dataset: unit vectors ``[n, dim]`` float32 and their other columns."""

    vectors: np.ndarray
    metadata: pa.Table  # every column except ``embedding``

    @property
    def ids(self) -> list[str]:
        return self.metadata.column("id").to_pylist()


def _vectors(table: pa.Table, dim: int, source: object) -> np.ndarray:
    """The ``embedding`` column as float32 ``[n, dim]`` (float16 widened), checked."""
    if "embedding" not in table.column_names:
        raise InputError(f"{source}: no 'embedding' column")
    col = table.column("embedding").combine_chunks()
    if col.null_count:
        raise InputError(f"{source}: {col.null_count} null embedding(s)")
    if len(col) == 0:
        return np.zeros((0, dim), np.float32)
    values = col.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(col) * dim:
        raise InputError(
            f"{source}: embedding length {values.size // len(col)} != manifest dim {dim}"
        )
    return np.ascontiguousarray(values.reshape(len(col), dim), dtype=np.float32)


def iter_batches(
    directory: str | Path,
    batch_rows: int = 65536,
    modality: str | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[EmbeddingBatch]:
    """Stream a dataset in batches of at most ``batch_rows`` rows, file by file, in write order.

    ``modality`` ("image"/"text") keeps only those rows; ``columns`` limits the metadata columns
    (``id`` and ``modality`` are always read).
    """
    import pyarrow.compute as pc

    manifest = DatasetManifest.read(directory)
    cols = None if columns is None else list(dict.fromkeys(["id", "modality", *columns]))
    for part in part_files(directory):
        pf = pq.ParquetFile(part)
        names = pf.schema_arrow.names
        if "id" not in names:
            raise InputError(f"{part}: no 'id' column")
        read = None if cols is None else [c for c in [*cols, "embedding"] if c in names]
        for rb in pf.iter_batches(batch_size=batch_rows, columns=read):
            table = pa.Table.from_batches([rb])
            if modality is not None and "modality" in table.column_names:
                table = table.filter(pc.equal(table.column("modality"), modality))
            vectors = _vectors(table, manifest.dim, part)
            meta = table.drop_columns(["embedding"])
            i = meta.schema.get_field_index("id")
            meta = meta.set_column(i, "id", meta.column("id").cast(pa.string()))
            yield EmbeddingBatch(vectors, meta)


def read_embeddings(
    directory: str | Path, modality: str | None = None, columns: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, pa.Table]:
    """``(ids, embeddings [N, D] float32, table)`` of a dataset, all in memory.

    ``modality`` keeps only those rows; ``columns`` limits the table's columns (``embedding`` is
    always read). The table excludes the embedding column.
    """
    dim = DatasetManifest.read(directory).dim
    batches = list(iter_batches(directory, 1 << 20, modality, columns))
    if not batches:
        return [], np.zeros((0, dim), np.float32), pa.table({"id": pa.array([], pa.string())})
    table = pa.concat_tables([b.metadata for b in batches], promote_options="default")
    vectors = (
        np.concatenate([b.vectors for b in batches]) if len(batches) > 1 else batches[0].vectors
    )
    return table.column("id").to_pylist(), vectors, table


def metadata_columns(directory: str | Path) -> dict[str, pa.DataType]:
    """Every column except ``embedding``, with its type (filters and ``index`` use these)."""
    out: dict[str, pa.DataType] = {}
    for part in part_files(directory):
        for f in pq.read_schema(part):
            if f.name != "embedding":
                out.setdefault(f.name, f.type)
    return out
