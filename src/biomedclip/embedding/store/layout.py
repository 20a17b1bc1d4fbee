"""The dataset layout: file names, schema, manifest keys, which files hold live rows.

``DIR/part-NNNNNN.parquet`` (compacted), ``DIR/batch-NNNNNNNN.parquet`` (written per batch while a
job runs), ``DIR/manifest.json``, ``DIR/errors.jsonl``. Schema of every file: ``id`` string,
``path`` string, ``text`` string, ``modality`` string ("image"/"text"), ``embedding``
fixed_size_list<float32|float16>[D] (L2-normalised), then source metadata columns.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip.errors import InputError

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
    model: str | None
    model_sha256: str | None
    dim: int
    dtype: str
    precision: str
    modality: str
    source: str
    backend: dict | None = None  # provenance: what ran (backend, precision, auto's choice, CPU)

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
            **({"backend": self.backend} if self.backend else {}),
            "count": count,
            "parts": parts,
            "errors": errors,
            "complete": complete,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "format": "biomedclip-embeddings/1",
        }


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """``manifest.json`` as a dict (see :class:`DatasetManifest` for the typed view)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory}: not an embeddings dataset (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from e


@dataclass
class DatasetManifest:
    """What a dataset's manifest says about its vectors (``count`` is counted when missing)."""

    model: str | None
    model_sha256: str | None
    dim: int
    dtype: str = "float32"
    normalized: bool = True
    precision: str | None = None
    modality: str | None = None
    count: int = 0
    complete: bool | None = None  # False while `biomedclip embed` runs or after it was stopped

    @classmethod
    def read(cls, directory: str | Path) -> DatasetManifest:
        d = read_manifest(directory)
        try:
            m = cls(
                model=d.get("model"),
                model_sha256=d.get("model_sha256"),
                dim=int(d["dim"]),
                dtype=str(d.get("dtype", "float32")),
                normalized=bool(d.get("normalized", True)),
                precision=d.get("precision"),
                modality=d.get("modality"),
                count=int(d.get("count") or 0),
                complete=d.get("complete"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{directory}: unreadable embedding manifest ({e})") from e
        if m.dtype not in STORAGE_DTYPES:
            raise InputError(f"{directory}: unknown embedding dtype {m.dtype!r}")
        if d.get("count") is None or m.complete is False:  # a running/stopped job: count the rows
            m.count = sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(directory))
        return m
