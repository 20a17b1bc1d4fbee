"""Building an index: layout choice, IVF training, streaming add, recall-targeted tuning.

Passes over the embedding dataset (streamed through :mod:`biomedclip.embedding.store`):

1. ``ivf``/``ivfpq``/``hnsw``: draw the training sample and the held-out tuning queries;
2. add every vector, while the tuning queries' exact neighbours are computed on the way;
3. :func:`biomedclip.index.tuning.tune` picks ``nprobe`` / ``ef_search`` / ``refine_factor``;
   the manifest, written last, records them with the recall measured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from biomedclip.errors import InputError
from biomedclip.index import layouts
from biomedclip.index.manifest import MANIFEST_FILE, IndexManifest, canonical_source
from biomedclip.index.spec import IndexSpec
from biomedclip.index.store import Progress, VectorIndex
from biomedclip.index.tuning import QuerySample, tune

if TYPE_CHECKING:  # the embedding package imports torch: only where a dataset is read
    from biomedclip.embedding.store import DatasetManifest, EmbeddingBatch

log = logging.getLogger(__name__)
Batches = Callable[[], Iterable["EmbeddingBatch"]]


def build_index(
    embeddings_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: IndexSpec | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    seed: int = 0,
) -> VectorIndex:
    """Index an embedding dataset into ``out_dir`` (see :class:`IndexSpec` for the choices)."""
    from biomedclip.embedding.store import DatasetManifest, iter_batches

    emb = DatasetManifest.read(embeddings_dir)
    return _build(
        emb, lambda: iter_batches(embeddings_dir), out_dir, spec, overwrite, progress, seed
    )


def build_index_from_arrays(
    ids: Sequence[str],
    vectors: np.ndarray,
    out_dir: str | os.PathLike,
    model: str | None,
    model_sha256: str | None = None,
    metadata: pa.Table | dict[str, Sequence[Any]] | None = None,
    spec: IndexSpec | None = None,
    overwrite: bool = False,
    batch_rows: int = 65536,
    seed: int = 0,
) -> VectorIndex:
    """Index in-memory vectors ``[n, dim]`` (``model`` names the model that made them)."""
    from biomedclip.embedding.store import DatasetManifest, EmbeddingBatch

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
    table = pa.table({"id": pa.array([str(i) for i in ids], pa.string())})
    if metadata is not None:
        extra = metadata if isinstance(metadata, pa.Table) else pa.table(dict(metadata))
        for name in extra.column_names:
            if name != "id":
                table = table.append_column(name, extra.column(name))

    def batches() -> Iterable[EmbeddingBatch]:
        for start in range(0, len(vectors), batch_rows):
            yield EmbeddingBatch(
                vectors[start : start + batch_rows], table.slice(start, batch_rows)
            )

    emb = DatasetManifest(model, model_sha256, int(vectors.shape[1]), count=len(vectors))
    return _build(emb, batches, out_dir, spec, overwrite, None, seed)


def _first_pass(
    batches: Batches, count: int, train_size: int, sample: QuerySample | None, seed: int
) -> np.ndarray:
    """One streaming pass: about ``train_size`` uniformly sampled training vectors (and the
    tuning queries' vectors into ``sample``)."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, train_size / max(count, 1))
    chunks, start = [], 0
    for b in batches():
        if sample is not None:
            sample.collect(b.vectors, start)
        if train_size:
            chunks.append(b.vectors[rng.random(len(b.vectors)) < keep])
        start += len(b.vectors)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def _train(index, train: np.ndarray, seed: int) -> None:
    """IVF k-means on all threads (large matrix products), then the codec on one thread.

    PQ training runs thousands of tiny OpenMP regions; on a busy machine every region's barrier
    waits for a descheduled thread, which made one-thread training ~20x faster than two here.
    """
    faiss = layouts.faiss_module()
    ivf = layouts.ivf_of(index)
    if ivf is not None and ivf.quantizer.ntotal == 0:
        km = faiss.Kmeans(ivf.d, ivf.nlist, niter=10, seed=seed, spherical=True)
        km.cp.max_points_per_centroid = 64
        km.train(train)
        ivf.quantizer.add(km.centroids)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.train(train)
    finally:
        faiss.omp_set_num_threads(threads)


def _build(
    emb: DatasetManifest,
    batches: Batches,
    out_dir: str | os.PathLike,
    spec: IndexSpec | None,
    overwrite: bool,
    progress: Progress | None,
    seed: int,
) -> VectorIndex:
    spec = spec or IndexSpec()
    out = Path(out_dir)
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise InputError(f"{out}: an index already exists (use `index add`, or --overwrite)")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    count = int(emb.count)
    resolved = spec.resolve(count, emb.dim)
    index = layouts.new_index(resolved, emb.dim)
    sample = None
    if resolved.kind != "flat" and count > spec.tune_k + 1:
        sample = QuerySample.draw(count, spec.tune_queries, spec.tune_k, seed)
    train_size = int(resolved.params.get("train_size", 0))
    if sample is not None or train_size:
        train = _first_pass(batches, count, train_size, sample, seed)
        if train_size:
            log.info("training %s on %d vectors", resolved.kind, len(train))
            _train(index, layouts.unit_rows(train), seed)
            del train
    out.mkdir(parents=True, exist_ok=True)
    manifest = IndexManifest(
        model=canonical_source(emb.model),
        model_sha256=emb.model_sha256,
        dim=emb.dim,
        normalized=True,
        metric="inner_product",
        kind=resolved.kind,
        params=resolved.params,
        count=0,
        index_file="",
        metadata_files=[],
        memory_bytes=resolved.memory_bytes,
    )
    vi = VectorIndex(out, manifest, index)
    observer = None
    if sample is not None:
        sample.vectors = [layouts.unit_rows(sample.queries)] if sample.vectors else []
        observer = sample.observe
    vi.add_batches(batches(), progress, observer)
    if sample is None:
        manifest.tuning = {"recall_target": spec.recall_target, "recall": 1.0, "exact": True}
    else:
        manifest.params, manifest.tuning = tune(
            index, resolved.kind, manifest.params, sample, spec.recall_target
        )
    manifest.write(out)  # the tuned parameters join the committed manifest
    return vi
