"""Helpers for index tests: embedding datasets written by the format's one writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from biomedclip.embedding.store import write_embeddings


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
    """A dataset exactly as `biomedclip embed` writes it (``complete=False``: a stopped run)."""
    write_embeddings(
        directory,
        ids,
        vectors,
        model=model,
        model_sha256=sha256,
        dtype=dtype,
        modality=modality or "image",
        paths=paths or [f"img/{i}.png" for i in ids],
        texts=texts,
        metadata=extra,
        rows_per_part=rows_per_part,
    )
    if not complete:
        m = json.loads((directory / "manifest.json").read_text())
        (directory / "manifest.json").write_text(json.dumps({**m, "complete": False}))
    return directory


def brute_force_top_k(
    base: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    sims = unit(queries) @ unit(base).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order
