"""Writing a dataset: one durable ``batch-*.parquet`` per encoded batch, compaction into parts."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip.embedding.batching import Failure
from biomedclip.embedding.sources import Item
from biomedclip.embedding.store.layout import (
    BATCH_RE,
    COMPAT_KEYS,
    COVERS_KEY,
    ERRORS,
    MANIFEST,
    PART_RE,
    STORAGE_DTYPES,
    TEMP_RE,
    DatasetInfo,
    _numbered,
    dataset_files,
    output_schema,
    part_files,
)
from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_open, atomic_write_json


def _fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class EmbeddingWriter:
    """Writes every encoded batch at once as its own durable ``batch-*.parquet``; ``close()``
    compacts them into ``part-*.parquet`` files of about ``rows_per_part`` rows."""

    def __init__(
        self,
        directory: str | Path,
        info: DatasetInfo,
        meta_schema: pa.Schema,
        rows_per_part: int = 50_000,
        overwrite: bool = False,
    ):
        self.dir = Path(directory)
        self.info = info
        self.schema = output_schema(info.dim, info.dtype, meta_schema)
        self.meta_names = [f.name for f in meta_schema]
        self.rows_per_part = max(1, rows_per_part)
        self.dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for _, p in _numbered(self.dir, PART_RE) + _numbered(self.dir, BATCH_RE):
                p.unlink()
            for name in (MANIFEST, ERRORS):
                (self.dir / name).unlink(missing_ok=True)
        self._check_compatible()
        self._cleanup()
        files = dataset_files(self.dir)
        self.done: set[tuple[str, str]] = set()
        self.count = 0
        for p in files.live:
            t = pq.read_table(p, columns=["id", "modality"])
            self.done.update(zip(t.column("id").to_pylist(), t.column("modality").to_pylist()))
            self.count += t.num_rows
        self._next_batch = files.next_batch
        self._next_part = max((n for n, _ in _numbered(self.dir, PART_RE)), default=-1) + 1
        self.resumed = self.count
        self.failures: dict[tuple[str, str], dict] = self._read_errors()
        self._errors_fp = (self.dir / ERRORS).open("a", encoding="utf-8")
        self.written_parts = len(files.live)

    def _cleanup(self) -> None:
        """Finish what a killed run left: temporary files and batches already compacted."""
        for p in self.dir.iterdir():
            if TEMP_RE.match(p.name):
                p.unlink(missing_ok=True)
        for p in dataset_files(self.dir).covered:
            p.unlink(missing_ok=True)

    def _check_compatible(self) -> None:
        path = self.dir / MANIFEST
        if not path.is_file():
            if _numbered(self.dir, PART_RE) or _numbered(self.dir, BATCH_RE):
                raise InputError(f"{self.dir}: has part files but no {MANIFEST}; use --overwrite")
            return
        try:
            old = json.loads(path.read_text())
        except ValueError as e:
            raise InputError(f"{path}: unreadable manifest ({e}); use --overwrite") from e
        new = self.info.manifest(0, 0, 0, False)
        diff = [k for k in COMPAT_KEYS if old.get(k) != new.get(k)]
        if diff:
            k = diff[0]
            raise InputError(
                f"{self.dir}: existing embeddings were made with {k}={old.get(k)!r}, this run has "
                f"{k}={new.get(k)!r}; use another --out or --overwrite"
            )

    def _read_errors(self) -> dict[tuple[str, str], dict]:
        """Failures of earlier runs (a torn last line from a kill is ignored)."""
        out: dict[tuple[str, str], dict] = {}
        path = self.dir / ERRORS
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    key = (rec["id"], rec["modality"])
                except (ValueError, KeyError, TypeError):
                    continue
                if key not in self.done:
                    out[key] = rec
        return out

    def skip_ids(self, modality: str) -> frozenset[str]:
        return frozenset(i for i, m in self.done if m == modality)

    # ---- rows -------------------------------------------------------------------------------
    def _table(
        self,
        ids: Sequence[str],
        modality: str | Sequence[str],
        embeddings: np.ndarray,
        paths: Sequence[str | None] | None = None,
        texts: Sequence[str | None] | None = None,
        meta: dict[str, Sequence[Any]] | None = None,
    ) -> pa.Table:
        vecs = np.asarray(embeddings).astype(
            np.float16 if self.info.dtype == "float16" else np.float32
        )
        flat = pa.array(vecs.reshape(-1), type=STORAGE_DTYPES[self.info.dtype])
        none = [None] * len(ids)
        arrays = [
            pa.array(list(ids), type=pa.string()),
            pa.array(none if paths is None else list(paths), type=pa.string()),
            pa.array(none if texts is None else list(texts), type=pa.string()),
            pa.array(_per_row(modality, len(ids)), type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, self.info.dim),
        ]
        for f in self.schema:
            if f.name in self.meta_names:
                arrays.append(pa.array(list((meta or {}).get(f.name, none)), type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None:
        """Write one encoded batch durably (fsync'd, atomic) before returning."""
        meta = {name: [it.meta.get(name) for it in items] for name in self.meta_names}
        self.add_arrays(
            [it.id for it in items],
            modality,
            embeddings,
            [it.path for it in items],
            [it.text for it in items],
            meta,
        )

    def add_arrays(
        self,
        ids: Sequence[str],
        modality: str | Sequence[str],
        embeddings: np.ndarray,
        paths: Sequence[str | None] | None = None,
        texts: Sequence[str | None] | None = None,
        meta: dict[str, Sequence[Any]] | None = None,
    ) -> None:
        """:meth:`add` for column arrays (``modality``: one for all rows or one a row; ``meta``:
        one list per metadata column)."""
        if len(ids) != len(embeddings):
            raise ValueError("ids and embeddings differ in length")
        if not len(ids):
            return
        table = self._table(ids, modality, embeddings, paths, texts, meta)
        with atomic_open(self.dir / f"batch-{self._next_batch:08d}.parquet", "wb") as fp:
            pq.write_table(table, fp)
        _fsync_dir(self.dir)
        self._next_batch += 1
        self.written_parts += 1
        self.count += table.num_rows
        for key in zip(ids, _per_row(modality, len(ids))):
            self.done.add(key)
            self.failures.pop(key, None)
        self.write_manifest(False)

    def add_failures(self, failures: Sequence[Failure]) -> None:
        for f in failures:
            rec = f.to_dict()
            self.failures[(f.id, f.modality)] = rec
            self._errors_fp.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if failures:
            self._errors_fp.flush()
            os.fsync(self._errors_fp.fileno())

    def compact(self) -> None:
        """Merge the batch files into parts of about ``rows_per_part`` rows, oldest first.

        Each part records the batch numbers it covers and is renamed into place before those
        batches are deleted, so a kill at any moment leaves every row in exactly one live file.
        """
        batches = _numbered(self.dir, BATCH_RE)
        while batches:
            group, rows = [], 0
            while batches and (not group or rows < self.rows_per_part):
                n, p = batches.pop(0)
                rows += pq.ParquetFile(p).metadata.num_rows
                group.append((n, p))
            first, last = group[0][0], group[-1][0]
            schema = self.schema.with_metadata({COVERS_KEY: f"{first}-{last}".encode()})
            path = self.dir / f"part-{self._next_part:06d}.parquet"
            with atomic_open(path, "wb") as fp, pq.ParquetWriter(fp, schema) as w:
                for _, p in group:
                    w.write_table(pq.read_table(p).cast(self.schema).replace_schema_metadata())
            _fsync_dir(self.dir)
            self._next_part += 1
            for _, p in group:
                p.unlink()
            _fsync_dir(self.dir)
        self.written_parts = len(part_files(self.dir))

    def write_manifest(self, complete: bool) -> None:
        atomic_write_json(
            self.dir / MANIFEST,
            self.info.manifest(self.count, self.written_parts, len(self.failures), complete),
        )

    def close(self, complete: bool = True) -> None:
        """End the run; when ``complete``, compact the batches and rewrite the errors file
        without inputs that have since succeeded."""
        self._errors_fp.close()
        if complete:
            self.compact()
            lines = [json.dumps(r, ensure_ascii=False) for r in self.failures.values()]
            with atomic_open(self.dir / ERRORS, "w") as fp:
                fp.write("".join(line + "\n" for line in lines))
        self.write_manifest(complete)


def write_embeddings(
    directory: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    model: str | None,
    model_sha256: str | None = None,
    dtype: str = "float32",
    modality: str | Sequence[str] = "image",
    paths: Sequence[str | None] | None = None,
    texts: Sequence[str | None] | None = None,
    metadata: dict[str, Sequence[Any]] | None = None,
    rows_per_part: int = 50_000,
    overwrite: bool = False,
) -> Path:
    """Write vectors made elsewhere (L2-normalised here) as a complete dataset, like ``embed``.

    ``modality``: "image"/"text" for every row, or one a row; ``metadata`` maps extra column
    names to one value per row (split, journal, year, label...).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
    meta = {k: pa.array(list(v)) for k, v in (metadata or {}).items()}
    for k, v in meta.items():
        if len(v) != len(ids):
            raise InputError(f"metadata column {k!r} has {len(v)} values for {len(ids)} rows")
    kinds = _per_row(modality, len(ids))
    label = kinds[0] if len(set(kinds)) == 1 else "both"
    info = DatasetInfo(model, model_sha256, vectors.shape[1], dtype, "fp32", label, "arrays")
    schema = pa.schema([pa.field(k, v.type) for k, v in meta.items()])
    writer = EmbeddingWriter(directory, info, schema, rows_per_part, overwrite)
    step = max(1, rows_per_part)
    for a in range(0, len(ids), step):
        b = min(a + step, len(ids))
        chunk = vectors[a:b]
        unit = chunk / np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
        writer.add_arrays(
            [str(i) for i in ids[a:b]],
            kinds[a:b],
            unit,
            None if paths is None else paths[a:b],
            None if texts is None else texts[a:b],
            {k: v[a:b].to_pylist() for k, v in meta.items()},
        )
    writer.close(complete=True)
    return Path(directory)


def _per_row(modality: str | Sequence[str], n: int) -> list[str]:
    if isinstance(modality, str):
        return [modality] * n
    if len(modality) != n:
        raise InputError(f"{len(modality)} modality values for {n} rows")
    return list(modality)
