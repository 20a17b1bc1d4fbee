"""The feature cache: image features computed once per (model sha256, dataset, split,
preprocessing) and reused by every probe, seed and sweep.

Features come from the one encoding engine (:meth:`biomedclip.embedding.Encoder.encode_images`):
one unit vector per input (the renormalised mean of its parts for multi-frame inputs). They are
written in chunks (``chunk-000000.safetensors`` + ``.json`` with the failures, both atomic, the
JSON last = the chunk's commit point), so a killed run resumes at the first missing chunk. A bad
image is recorded with its error and left out; the rest of its chunk is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biomedclip.eval.datasets.base import LabelledSet
from biomedclip.io_utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class Features:
    """Unit image features of the readable items of a set, and the failures."""

    dataset: LabelledSet
    embeddings: np.ndarray  # [n_ok, D] float32
    positions: np.ndarray  # [n_ok] int64, positions in ``dataset``
    failures: list[dict] = field(default_factory=list)
    cache_dir: Path | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels[self.positions]

    @property
    def ids(self) -> list[str]:
        return [self.dataset.ids[i] for i in self.positions]


def model_digest(model) -> str:
    """The weights file's sha256 (``model.load_info``), else a sha256 of the state dict."""
    info = getattr(model, "load_info", None)
    sha = getattr(info, "sha256", None) if info is not None else None
    if sha:
        return str(sha)
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return h.hexdigest()


def preprocessing_label(encoder) -> str:
    """What changes the features besides the weights: transform, precision, backend, read options."""
    s = getattr(encoder, "settings", None)
    parts = [repr(getattr(encoder, "preprocess", None))]
    for attr in ("precision", "backend"):
        parts.append(f"{attr}={getattr(s, attr, None)!r}")
    # the reader the encoder really uses (with ``fast_decode``, JPEGs are drafted)
    parts.append(f"read={getattr(encoder, 'read', getattr(s, 'read', None))!r}")
    return "; ".join(parts)


def cache_key(model_sha: str, ds: LabelledSet, preprocessing: str) -> str:
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "model": model_sha,
            "dataset": ds.name,
            "split": ds.split,
            "data": ds.fingerprint,
            "preprocessing": preprocessing,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def compute_features(
    encoder,
    ds: LabelledSet,
    cache_root: str | Path | None = None,
    chunk_size: int = 512,
    model_sha: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Features:
    """Features of ``ds`` through ``encoder``; cached under ``cache_root`` when given."""
    cache_dir = None
    if cache_root is not None:
        sha = model_sha or model_digest(encoder.model)
        key = cache_key(sha, ds, preprocessing_label(encoder))
        cache_dir = Path(cache_root) / f"{ds.name}-{ds.split}-{key[:16]}"
        cache_dir.mkdir(parents=True, exist_ok=True)
        meta = cache_dir / "meta.json"
        if not meta.exists():
            atomic_write_json(
                meta,
                {"key": key, "model_sha256": sha, "dataset": ds.name, "split": ds.split,
                 "n": len(ds), "chunk_size": chunk_size, "preprocessing": preprocessing_label(encoder)},
            )  # fmt: skip
        chunk_size = json.loads(meta.read_text())["chunk_size"]
    embs, positions, failures = [], [], []
    for c, start in enumerate(range(0, len(ds), chunk_size)):
        stop = min(len(ds), start + chunk_size)
        got = _load_chunk(cache_dir, c) if cache_dir else None
        if got is None:
            got = _encode_chunk(encoder, ds, start, stop)
            if cache_dir:
                _save_chunk(cache_dir, c, *got)
        embs.append(got[0])
        positions.append(got[1])
        failures += got[2]
        if progress:
            progress(stop - start)
    emb = np.concatenate(embs) if embs else np.zeros((0, 0), np.float32)
    pos = np.concatenate(positions).astype(np.int64)
    for f in failures:
        log.warning("%s: left out %s: %s", ds.name, f["id"], f["error"])
    return Features(ds, emb.astype(np.float32, copy=False), pos, failures, cache_dir)


def _encode_chunk(encoder, ds: LabelledSet, start: int, stop: int):
    positions = list(range(start, stop))
    r = encoder.encode_images(ds.sources(positions), ids=[ds.ids[i] for i in positions])
    emb, inputs = r.per_input()
    failures = [{"id": f.id, "error": str(f.error)} for f in r.failures]
    return np.asarray(emb, np.float32), start + np.asarray(inputs, np.int64), failures


def _chunk_paths(cache_dir: Path, c: int) -> tuple[Path, Path]:
    return cache_dir / f"chunk-{c:06d}.safetensors", cache_dir / f"chunk-{c:06d}.json"


def _save_chunk(cache_dir: Path, c: int, emb: np.ndarray, pos: np.ndarray, failures) -> None:
    from safetensors.numpy import save

    tensors, meta = _chunk_paths(cache_dir, c)
    atomic_write_bytes(tensors, save({"embeddings": np.ascontiguousarray(emb), "positions": pos}))
    atomic_write_json(meta, {"n_ok": len(pos), "failures": failures})


def _load_chunk(cache_dir: Path, c: int):
    from safetensors.numpy import load_file

    tensors, meta = _chunk_paths(cache_dir, c)
    if not meta.exists() or not tensors.exists():
        return None
    t = load_file(str(tensors))
    return t["embeddings"], t["positions"], json.loads(meta.read_text())["failures"]
