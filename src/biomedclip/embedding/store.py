"""The embeddings dataset on disk: ``part-*.parquet`` files, ``manifest.json`` and ``errors.jsonl``.

While a job runs, every encoded batch is written at once as ``batch-NNNNNNNN.parquet`` (temporary
file, fsync, rename), so a kill loses at most the batch in flight. When the job completes, the
batches are compacted into ``part-NNNNNN.parquet`` files; each part names the batch range it
covers in its schema metadata, is renamed into place, and only then are those batches deleted.
Readers take every part plus the batches no part covers (:func:`part_files`), so the dataset is
readable and duplicate-free at every moment; a rerun finishes an interrupted compaction, reads the
ids already present and skips them. After a completed job only ``part-*.parquet`` files remain.
Schema of every part:
``id`` string, ``path`` string, ``text`` string, ``modality`` string ("image"/"text"),
``embedding`` fixed_size_list<float32|float16>[D] (L2-normalised), then source metadata columns.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip.embedding.batching import Failure
from biomedclip.embedding.sources import Item
from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_open, atomic_write_json

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
BATCH_RE = re.compile(r"^batch-(\d+)\.parquet$")
# temporary files of atomic writes (biomedclip.io_utils) that a kill can leave behind
TEMP_RE = re.compile(r"^\.((part|batch)-\d+\.parquet|manifest\.json|errors\.jsonl)\..*\.tmp$")
COVERS_KEY = b"biomedclip.covers"  # a compacted part's schema metadata: "FIRST-LAST" batch numbers
STORAGE_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
# manifest keys that must agree for a rerun to append to an existing dataset
COMPAT_KEYS = ("model", "model_sha256", "dim", "dtype", "precision")


def _numbered(directory: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    out = []
    for p in directory.glob("*.parquet"):
        m = pattern.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _covers(part: Path) -> tuple[int, int] | None:
    meta = pq.read_schema(part).metadata or {}
    raw = meta.get(COVERS_KEY)
    if not raw:
        return None
    first, last = raw.decode().split("-")
    return int(first), int(last)


@dataclass
class DatasetFiles:
    """The live files of a dataset: compacted parts plus the batch files no part covers."""

    parts: list[Path]
    batches: list[Path]
    covered: list[Path]  # batch files already compacted into a part (left by a kill)
    next_batch: int

    @property
    def live(self) -> list[Path]:
        return self.parts + self.batches


def dataset_files(directory: str | Path) -> DatasetFiles:
    d = Path(directory)
    parts = [p for _, p in _numbered(d, PART_RE)]
    ranges = [r for r in (_covers(p) for p in parts) if r is not None]
    batches, covered = [], []
    top = max((last for _, last in ranges), default=-1)
    for n, p in _numbered(d, BATCH_RE):
        top = max(top, n)
        (covered if any(a <= n <= b for a, b in ranges) else batches).append(p)
    return DatasetFiles(parts, batches, covered, top + 1)


def part_files(directory: str | Path) -> list[Path]:
    """Every file holding live rows, in write order: compacted parts, then uncompacted batches.

    Rule for readers: a ``batch-N.parquet`` whose N lies in a part's ``biomedclip.covers`` range
    is a leftover of an interrupted compaction and must be skipped (its rows are in that part).
    """
    return dataset_files(directory).live


def output_schema(dim: int, storage_dtype: str, meta_schema: pa.Schema) -> pa.Schema:
    value = STORAGE_DTYPES[storage_dtype]
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("text", pa.string()),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.field("item", value), dim), nullable=False),
    ]
    return pa.schema(fields + list(meta_schema))


@dataclass
class DatasetInfo:
    model: str
    model_sha256: str | None
    dim: int
    dtype: str
    precision: str
    modality: str
    source: str

    def manifest(self, count: int, parts: int, errors: int, complete: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "dim": self.dim,
            "normalized": True,
            "dtype": self.dtype,
            "precision": self.precision,
            "modality": self.modality,
            "source": self.source,
            "count": count,
            "parts": parts,
            "errors": errors,
            "complete": complete,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "format": "biomedclip-embeddings/1",
        }


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
    def _table(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> pa.Table:
        vecs = np.asarray(embeddings).astype(
            np.float16 if self.info.dtype == "float16" else np.float32
        )
        flat = pa.array(vecs.reshape(-1), type=STORAGE_DTYPES[self.info.dtype])
        arrays = [
            pa.array([it.id for it in items], type=pa.string()),
            pa.array([it.path for it in items], type=pa.string()),
            pa.array([it.text for it in items], type=pa.string()),
            pa.array([modality] * len(items), type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, self.info.dim),
        ]
        for f in self.schema:
            if f.name in self.meta_names:
                arrays.append(pa.array([it.meta.get(f.name) for it in items], type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None:
        """Write one encoded batch durably (fsync'd, atomic) before returning."""
        if len(items) != len(embeddings):
            raise ValueError("items and embeddings differ in length")
        if not items:
            return
        table = self._table(items, modality, embeddings)
        with atomic_open(self.dir / f"batch-{self._next_batch:08d}.parquet", "wb") as fp:
            pq.write_table(table, fp)
        _fsync_dir(self.dir)
        self._next_batch += 1
        self.written_parts += 1
        self.count += table.num_rows
        for it in items:
            self.done.add((it.id, modality))
            self.failures.pop((it.id, modality), None)
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


# ---- reading ------------------------------------------------------------------------------------
def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory}: not an embeddings dataset (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from e


def read_embeddings(
    directory: str | Path, modality: str | None = None, columns: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, pa.Table]:
    """``(ids, embeddings [N, D] float32, table)`` of an embeddings dataset written by ``embed``.

    ``modality`` ("image"/"text") keeps only those rows; ``columns`` limits the table's columns
    (``embedding`` is always read). The table excludes the embedding column.
    """
    manifest = read_manifest(directory)
    parts = part_files(directory)
    dim = int(manifest["dim"])
    if not parts:
        return [], np.zeros((0, dim), np.float32), pa.table({"id": pa.array([], pa.string())})
    cols = (
        None if columns is None else list(dict.fromkeys(["id", "modality", "embedding", *columns]))
    )
    table = pa.concat_tables(
        [pq.read_table(p, columns=cols) for p in parts], promote_options="default"
    )
    if modality is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column("modality"), modality))
    emb = table.column("embedding").combine_chunks()
    values = emb.flatten().to_numpy(zero_copy_only=False)
    embeddings = np.asarray(values, dtype=np.float32).reshape(-1, dim)
    table = table.drop_columns(["embedding"])
    return table.column("id").to_pylist(), embeddings, table
