"""An index directory: a FAISS index, Parquet metadata rows aligned with it, and a manifest.

Layout::

    DIR/manifest.json          model, dim, normalisation, layout, files (the commit point)
    DIR/index-00003.faiss      FAISS index; row i is metadata row i
    DIR/meta-00000.parquet     id, path, text, modality, ... (one part per build/add)

``build_index`` creates a directory from an embedding dataset, ``VectorIndex.add`` appends to it
(skipping ids already present, so re-running an add is harmless), ``VectorIndex.search`` returns
:class:`Hit` lists. Every change writes new files and then the manifest; stale files are removed
afterwards, so an interrupted build or add leaves the previous index intact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from biomedclip.errors import InputError
from biomedclip.index.embeddings import (
    ID_COLUMN,
    EmbeddingBatch,
    EmbeddingManifest,
    iter_embeddings,
)
from biomedclip.index.manifest import MANIFEST_FILE, IndexManifest, canonical_source
from biomedclip.index.spec import IndexSpec, ResolvedSpec

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError(
            "the vector index needs FAISS: pip install 'biomedclip[index]' (faiss-cpu)"
        ) from e
    return faiss


@dataclass
class Hit:
    """One search result: its rank (1-based), id, cosine score, row number and metadata."""

    rank: int
    id: str
    score: float
    row: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "score": self.score, **self.metadata}


@dataclass
class AddReport:
    added: int
    skipped_duplicates: int
    total: int


# ---- FAISS construction ---------------------------------------------------------------------


def _new_faiss_index(spec: ResolvedSpec, dim: int):
    faiss = _faiss()
    p = spec.params
    if spec.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(p["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(p["ef_construction"])
        index.hnsw.efSearch = int(p["ef_search"])
        return index
    if spec.kind == "ivfpq":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(
            quantizer,
            dim,
            int(p["nlist"]),
            int(p["pq_m"]),
            int(p["pq_bits"]),
            faiss.METRIC_INNER_PRODUCT,
        )
        index.own_fields = True
        quantizer.this.disown()
        if p.get("refine"):
            refined = faiss.IndexRefineFlat(index)
            refined.own_fields = True
            index.this.disown()
            refined.k_factor = float(p.get("refine_factor", 4))
            return refined
        return index
    raise InputError(f"unknown index kind {spec.kind!r}")


def _ivf_of(index):
    faiss = _faiss()
    base = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else index
    return faiss.extract_index_ivf(base)


def _apply_search_params(index, kind: str, params: dict[str, Any]) -> None:
    faiss = _faiss()
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivfpq":
        _ivf_of(index).nprobe = int(params["nprobe"])
        if params.get("refine"):
            faiss.downcast_index(index).k_factor = float(params["refine_factor"])


def _unit(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"vectors must be 2-D [n, dim], got shape {x.shape}")
    x = x.copy()
    _faiss().normalize_L2(x)
    return x


def _sample_training(
    batches: Iterable[EmbeddingBatch], total: int, size: int, seed: int
) -> np.ndarray:
    """About ``size`` vectors sampled uniformly over one streaming pass."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, size / max(total, 1))
    chunks = []
    for b in batches:
        mask = rng.random(len(b.vectors)) < keep
        chunks.append(b.vectors[mask])
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


# ---- the directory ---------------------------------------------------------------------------


class VectorIndex:
    """An opened index directory. Open with :meth:`open`; create with :func:`build_index`."""

    def __init__(self, directory: Path, manifest: IndexManifest, index):
        self.directory = directory
        self.manifest = manifest
        self._index = index
        self._metadata: pa.Table | None = None
        _apply_search_params(index, manifest.kind, manifest.params)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike) -> VectorIndex:
        d = Path(directory)
        manifest = IndexManifest.read(d)
        path = d / manifest.index_file
        if not path.is_file():
            raise InputError(
                f"{d}: index file {manifest.index_file} named by the manifest is missing"
            )
        index = _faiss().read_index(str(path))
        if index.ntotal != manifest.count or index.d != manifest.dim:
            raise InputError(
                f"{d}: index file holds {index.ntotal} vectors of dim {index.d}, the manifest "
                f"says {manifest.count} of dim {manifest.dim}"
            )
        return cls(d, manifest, index)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def faiss_index(self):
        return self._index

    def metadata(self) -> pa.Table:
        """All metadata rows (row i describes vector i); read once, then cached."""
        if self._metadata is None:
            import pyarrow.parquet as pq

            tables = [pq.read_table(self.directory / f) for f in self.manifest.metadata_files]
            self._metadata = (
                pa.concat_tables(tables, promote_options="default")
                if tables
                else pa.table({ID_COLUMN: pa.array([], pa.string())})
            )
            if self._metadata.num_rows != self.manifest.count:
                raise InputError(
                    f"{self.directory}: {self._metadata.num_rows} metadata rows for "
                    f"{self.manifest.count} vectors"
                )
        return self._metadata

    def ids(self) -> list[str]:
        return self.metadata().column(ID_COLUMN).to_pylist()

    def keys(self) -> list[tuple[str, str | None]]:
        """``(id, modality)`` per row: an image and its caption may share an id."""
        return _keys(self.metadata())

    # -- searching -----------------------------------------------------------------------------
    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade speed for recall at query time (HNSW ``ef_search``, IVF ``nprobe``)."""
        params = dict(self.manifest.params)
        if ef_search is not None:
            params["ef_search"] = int(ef_search)
        if nprobe is not None:
            params["nprobe"] = int(nprobe)
        self.manifest.params = params
        _apply_search_params(self._index, self.kind, params)

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search of unit-normalised ``queries``: ``(scores [Q,k], rows [Q,k])``; row -1 = none."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.shape[1] != self.dim:
            raise InputError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        if k < 1:
            raise InputError(f"top-k must be >= 1, got {k}")
        return self._index.search(_unit(q), int(k))

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits with metadata for each query vector (``[D]`` or ``[Q, D]``)."""
        scores, rows = self.search_vectors(queries, min(k, max(len(self), 1)))
        meta = self.metadata()
        flat_rows = sorted({int(r) for r in rows.ravel() if r >= 0})
        lookup = dict(zip(flat_rows, meta.take(pa.array(flat_rows, pa.int64())).to_pylist()))
        out = []
        for qs, qr in zip(scores, rows):
            hits = []
            for s, r in zip(qs, qr):
                if r < 0:
                    continue
                row = dict(lookup[int(r)])
                hit_id = str(row.pop(ID_COLUMN))
                hits.append(Hit(len(hits) + 1, hit_id, float(s), int(r), row))
            out.append(hits)
        return out

    # -- adding --------------------------------------------------------------------------------
    def add_embeddings(
        self, embeddings_dir: str | os.PathLike, progress: Progress | None = None
    ) -> AddReport:
        """Append an embedding dataset made by the same model; ids already indexed are skipped."""
        emb = EmbeddingManifest.read(Path(embeddings_dir))
        _check_same_model(self.manifest, emb, embeddings_dir)
        return self.add_batches(iter_embeddings(embeddings_dir), progress)

    def add_batches(
        self, batches: Iterable[EmbeddingBatch], progress: Progress | None = None
    ) -> AddReport:
        """Append vectors + metadata rows; commits a new index file and manifest at the end."""
        seen = set(self.keys())
        before = len(self)
        skipped, tables = 0, []
        for b in batches:
            keys = _keys(b.metadata)
            keep = _first_occurrences(keys, seen)
            skipped += len(keys) - len(keep)
            if keep:
                self._index.add(_unit(b.vectors[keep]))
                tables.append(b.metadata.take(pa.array(keep, pa.int64())))
            if progress:
                progress(len(b.ids))
        added = len(self) - before
        if added:
            self._commit(tables)
        return AddReport(added, skipped, len(self))

    def _commit(self, new_tables: list[pa.Table]) -> None:
        """Write the index + new metadata part under fresh names, then the manifest; clean up."""
        import pyarrow.parquet as pq

        from biomedclip.io_utils import atomic_open

        faiss = _faiss()
        m = self.manifest
        gen = _next_generation(self.directory)
        index_file, meta_file = f"index-{gen:05d}.faiss", f"meta-{gen:05d}.parquet"
        table = pa.concat_tables(new_tables, promote_options="default")
        with atomic_open(self.directory / meta_file) as f:
            pq.write_table(table, f)
        _write_index_atomic(self._index, self.directory / index_file)
        old_index = m.index_file
        m.index_file = index_file
        m.metadata_files = [*m.metadata_files, meta_file]
        m.count = len(self)
        m.faiss_version = faiss.__version__
        m.write(self.directory)
        if old_index and old_index != index_file:
            (self.directory / old_index).unlink(missing_ok=True)
        self._metadata = None
        _remove_stale(self.directory, m)


def _write_index_atomic(index, path: Path) -> None:
    """``faiss.write_index`` to a temporary name, fsync, rename (no in-memory copy of the index)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _faiss().write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _keys(table: pa.Table) -> list[tuple[str, str | None]]:
    ids = table.column(ID_COLUMN).to_pylist()
    if "modality" in table.column_names:
        return list(zip(ids, table.column("modality").to_pylist()))
    return [(i, None) for i in ids]


def _first_occurrences(keys: Sequence[tuple], seen: set[tuple]) -> list[int]:
    """Positions of keys not yet in ``seen`` (adding them to it); later duplicates are dropped."""
    keep = []
    for i, x in enumerate(keys):
        if x not in seen:
            seen.add(x)
            keep.append(i)
    return keep


def _next_generation(directory: Path) -> int:
    gens = [
        int(p.stem.split("-")[1])
        for p in list(directory.glob("index-*.faiss")) + list(directory.glob("meta-*.parquet"))
        if p.stem.split("-")[1].isdigit()
    ]
    return max(gens, default=-1) + 1


def _remove_stale(directory: Path, manifest: IndexManifest) -> None:
    live = {manifest.index_file, *manifest.metadata_files, MANIFEST_FILE}
    leftovers = [*directory.glob(".index-*.tmp"), *directory.glob(".meta-*.tmp")]  # killed runs
    for p in [*directory.glob("index-*.faiss"), *directory.glob("meta-*.parquet"), *leftovers]:
        if p.name not in live:
            p.unlink(missing_ok=True)


def _check_same_model(index: IndexManifest, emb: EmbeddingManifest, source: object) -> None:
    if emb.dim != index.dim:
        raise InputError(
            f"{source}: embeddings of dim {emb.dim} cannot go into an index of dim {index.dim}"
        )
    index.check_model(emb.model, emb.model_sha256, emb.dim)


# ---- building --------------------------------------------------------------------------------


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
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
    cols = {ID_COLUMN: pa.array([str(i) for i in ids], pa.string())}
    table = pa.table(cols)
    if metadata is not None:
        extra = metadata if isinstance(metadata, pa.Table) else pa.table(dict(metadata))
        for name in extra.column_names:
            if name != ID_COLUMN:
                table = table.append_column(name, extra.column(name))

    def batches() -> Iterable[EmbeddingBatch]:
        for start in range(0, len(vectors), batch_rows):
            yield EmbeddingBatch(
                vectors[start : start + batch_rows], table.slice(start, batch_rows)
            )

    emb = EmbeddingManifest(
        model, model_sha256, int(vectors.shape[1]), True, "float32", len(vectors)
    )
    return _build(emb, batches, out_dir, spec, overwrite, None, seed)


def build_index(
    embeddings_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: IndexSpec | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    seed: int = 0,
) -> VectorIndex:
    """Index an embedding dataset into ``out_dir`` (see :class:`IndexSpec` for the layout choice)."""
    emb = EmbeddingManifest.read(Path(embeddings_dir))
    if emb.count is None:  # older/partial manifests: count the rows
        import pyarrow.parquet as pq

        from biomedclip.index.embeddings import part_files

        emb.count = sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(embeddings_dir))
    return _build(
        emb, lambda: iter_embeddings(embeddings_dir), out_dir, spec, overwrite, progress, seed
    )


def _build(
    emb: EmbeddingManifest,
    batches: Callable[[], Iterable[EmbeddingBatch]],
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
    count = int(emb.count or 0)
    resolved = spec.resolve(int(count), emb.dim)
    index = _new_faiss_index(resolved, emb.dim)
    if resolved.kind == "ivfpq":
        train = _sample_training(batches(), int(count), int(resolved.params["train_size"]), seed)
        log.info("training ivfpq on %d vectors", len(train))
        index.train(_unit(train))
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
    )
    vi = VectorIndex(out, manifest, index)
    vi.add_batches(batches(), progress)
    if not manifest.index_file:  # empty dataset: still commit an (empty) index
        vi._commit([pa.table({ID_COLUMN: pa.array([], pa.string())})])
    return vi
