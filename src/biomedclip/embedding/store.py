"""The embeddings dataset on disk: ``part-*.parquet`` files, ``manifest.json`` and ``errors.jsonl``.

Each part file is written atomically (temporary file + rename), so a killed job leaves only complete
parts; a rerun reads the ids already present and skips them. Schema of every part:
``id`` string, ``path`` string, ``text`` string, ``modality`` string ("image"/"text"),
``embedding`` fixed_size_list<float32|float16>[D] (L2-normalised), then source metadata columns.
"""

from __future__ import annotations

import json
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
STORAGE_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
# manifest keys that must agree for a rerun to append to an existing dataset
COMPAT_KEYS = ("model", "model_sha256", "dim", "dtype", "precision")


def part_files(directory: str | Path) -> list[Path]:
    d = Path(directory)
    return sorted(p for p in d.glob("part-*.parquet") if PART_RE.match(p.name))


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


class EmbeddingWriter:
    """Buffers rows and writes them as atomic part files; keeps the manifest up to date."""

    def __init__(
        self,
        directory: str | Path,
        info: DatasetInfo,
        meta_schema: pa.Schema,
        rows_per_part: int = 4096,
        flush_seconds: float = 30.0,
        overwrite: bool = False,
    ):
        self.dir = Path(directory)
        self.info = info
        self.schema = output_schema(info.dim, info.dtype, meta_schema)
        self.meta_names = [f.name for f in meta_schema]
        self.rows_per_part, self.flush_seconds = rows_per_part, flush_seconds
        self._rows: list[dict] = []
        self._vecs: list[np.ndarray] = []
        self._last_flush = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for p in part_files(self.dir):
                p.unlink()
            for name in (MANIFEST, ERRORS):
                (self.dir / name).unlink(missing_ok=True)
        self._check_compatible()
        existing = part_files(self.dir)
        self.done: set[tuple[str, str]] = set()
        self.count = 0
        for p in existing:
            t = pq.read_table(p, columns=["id", "modality"])
            self.done.update(zip(t.column("id").to_pylist(), t.column("modality").to_pylist()))
            self.count += t.num_rows
        self._next = max((int(PART_RE.match(p.name).group(1)) for p in existing), default=-1) + 1
        self.resumed = self.count
        self.failures: dict[tuple[str, str], dict] = self._read_errors()
        self._errors_fp = (self.dir / ERRORS).open("a", encoding="utf-8")
        self.written_parts = len(existing)

    def _check_compatible(self) -> None:
        path = self.dir / MANIFEST
        if not path.is_file():
            if part_files(self.dir):
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
    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None:
        if len(items) != len(embeddings):
            raise ValueError("items and embeddings differ in length")
        for it in items:
            row = {"id": it.id, "path": it.path, "text": it.text, "modality": modality}
            for name in self.meta_names:
                row[name] = it.meta.get(name)
            self._rows.append(row)
            self.done.add((it.id, modality))
            self.failures.pop((it.id, modality), None)
        self._vecs.append(np.asarray(embeddings, dtype=np.float32))
        if len(self._rows) >= self.rows_per_part or (
            time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def add_failures(self, failures: Sequence[Failure]) -> None:
        for f in failures:
            rec = f.to_dict()
            self.failures[(f.id, f.modality)] = rec
            self._errors_fp.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if failures:
            self._errors_fp.flush()

    def flush(self, complete: bool = False) -> None:
        if self._rows:
            vecs = np.concatenate(self._vecs).astype(
                np.float16 if self.info.dtype == "float16" else np.float32
            )
            flat = pa.array(vecs.reshape(-1), type=STORAGE_DTYPES[self.info.dtype])
            emb = pa.FixedSizeListArray.from_arrays(flat, self.info.dim)
            cols = {
                name: [r[name] for r in self._rows] for name in ("id", "path", "text", "modality")
            }
            arrays = [
                pa.array(cols[n], type=pa.string()) for n in ("id", "path", "text", "modality")
            ]
            arrays.append(emb)
            for f in self.schema:
                if f.name in self.meta_names:
                    arrays.append(pa.array([r[f.name] for r in self._rows], type=f.type))
            table = pa.Table.from_arrays(arrays, schema=self.schema)
            path = self.dir / f"part-{self._next:06d}.parquet"
            with atomic_open(path, "wb") as fp:
                pq.write_table(table, fp)
            self._next += 1
            self.written_parts += 1
            self.count += table.num_rows
            self._rows, self._vecs = [], []
        self._last_flush = time.monotonic()
        self.write_manifest(complete)

    def write_manifest(self, complete: bool) -> None:
        atomic_write_json(
            self.dir / MANIFEST,
            self.info.manifest(self.count, self.written_parts, len(self.failures), complete),
        )

    def close(self, complete: bool = True) -> None:
        """Flush the last rows; rewrite the errors file without inputs that have since succeeded."""
        self.flush(complete=complete)
        self._errors_fp.close()
        if complete:
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
