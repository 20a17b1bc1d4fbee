"""Helpers for index tests: embedding datasets in the exact layout `biomedclip embed` writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, seed: int = 0, centres: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = unit(rng.standard_normal((centres, dim)))
    return unit(c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim))


def write_engine_dataset(
    directory: Path,
    ids: list[str],
    vectors: np.ndarray,
    model: str | None = "test-model",
    sha256: str | None = None,
    dtype: str = "float32",
    modality: list[str] | None = None,
    paths: list[str | None] | None = None,
    texts: list[str | None] | None = None,
    extra: dict[str, list] | None = None,
    rows_per_part: int = 1000,
    complete: bool = True,
) -> Path:
    """The embedding engine's schema: non-null id/modality, nullable path/text, fixed-size list."""
    directory.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    value = pa.float16() if dtype == "float16" else pa.float32()
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("text", pa.string()),
            pa.field("modality", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.field("item", value), dim), nullable=False),
            *[pa.field(k, pa.array(v).type) for k, v in (extra or {}).items()],
        ]
    )
    np_dtype = np.float16 if dtype == "float16" else np.float32
    unit_vectors = unit(vectors).astype(np_dtype)
    modality = modality or ["image"] * n
    paths = paths or [f"img/{i}.png" for i in ids]
    texts = texts or [None] * n
    for part, start in enumerate(range(0, n, rows_per_part)):
        s = slice(start, min(start + rows_per_part, n))
        flat = pa.array(unit_vectors[s].reshape(-1), type=value)
        cols = [
            pa.array(ids[s], pa.string()),
            pa.array(paths[s], pa.string()),
            pa.array(texts[s], pa.string()),
            pa.array(modality[s], pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, type=schema.field("embedding").type),
            *[pa.array(v[s]) for v in (extra or {}).values()],
        ]
        pq.write_table(
            pa.Table.from_arrays(cols, schema=schema), directory / f"part-{part:05d}.parquet"
        )
    manifest = {
        "model": model,
        "model_sha256": sha256,
        "dim": dim,
        "normalized": True,
        "dtype": dtype,
        "precision": "fp32",
        "modality": "image",
        "count": n,
        "complete": complete,
        "format": "biomedclip-embeddings/1",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def brute_force_top_k(
    base: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    sims = unit(queries) @ unit(base).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order
