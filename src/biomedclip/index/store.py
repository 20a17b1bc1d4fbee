"""An index directory: a FAISS index, metadata rows aligned with it, and a manifest.

Layout::

    DIR/manifest.json          model, dim, layout, tuned parameters + recall, files (commit point)
    DIR/index-00003.faiss      FAISS index; row i is metadata row i (memory-mapped when opened)
    DIR/meta-00000.arrow       id, path, text, modality, ... (Arrow IPC, memory-mapped; one per add)

:func:`~biomedclip.index.build.build_index` creates a directory, ``VectorIndex.add_embeddings``
appends to it (skipping ids already present, so re-running an add is harmless), ``search`` returns
:class:`Hit` lists, optionally filtered on metadata columns. Every change writes new files and then
the manifest; stale files are removed afterwards, so an interrupted build or add leaves the
previous index intact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from biomedclip.errors import InputError
from biomedclip.index import layouts
from biomedclip.index.filters import conditions, filter_mask
from biomedclip.index.manifest import MANIFEST_FILE, IndexManifest

if TYPE_CHECKING:  # the embedding package imports torch: only where a dataset is read
    from biomedclip.embedding.store import DatasetManifest, EmbeddingBatch

Progress = Callable[[int], None]
# called with (vectors added, their first row, their dataset positions) during add_batches
Observer = Callable[[np.ndarray, int, np.ndarray], None]


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


class VectorIndex:
    """An opened index directory. Open with :meth:`open`; create with ``build_index``."""

    def __init__(self, directory: Path, manifest: IndexManifest, index, mapped: bool = False):
        self.directory = directory
        self.manifest = manifest
        self._index = index
        self._mapped = mapped
        self._metadata: pa.Table | None = None
        self._masks: dict[str, np.ndarray] = {}  # recent filters' row masks

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike, mmap: bool = True) -> VectorIndex:
        """Open an index; ``mmap`` maps the index file instead of reading it into memory."""
        d = Path(directory)
        manifest = IndexManifest.read(d)
        path = d / manifest.index_file
        if not path.is_file():
            raise InputError(
                f"{d}: index file {manifest.index_file} named by the manifest is missing"
            )
        tail = layouts.mapped_tail_bytes(
            manifest.kind, manifest.params, manifest.count, manifest.dim
        )
        index = layouts.read_index(str(path), mmap, tail)
        if index.ntotal != manifest.count or index.d != manifest.dim:
            raise InputError(
                f"{d}: index file holds {index.ntotal} vectors of dim {index.d}, the manifest "
                f"says {manifest.count} of dim {manifest.dim}"
            )
        return cls(d, manifest, index, mapped=mmap)

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
        """All metadata rows (row i describes vector i), memory-mapped; cached."""
        if self._metadata is None:
            tables = [_read_meta(self.directory / f) for f in self.manifest.metadata_files]
            self._metadata = (
                pa.concat_tables(tables, promote_options="default")
                if tables
                else pa.table({"id": pa.array([], pa.string())})
            )
            if self._metadata.num_rows != self.manifest.count:
                raise InputError(
                    f"{self.directory}: {self._metadata.num_rows} metadata rows for "
                    f"{self.manifest.count} vectors"
                )
        return self._metadata

    def ids(self) -> list[str]:
        return self.metadata().column("id").to_pylist()

    def keys(self) -> list[tuple[str, str | None]]:
        """``(id, modality)`` per row: an image and its caption may share an id."""
        return _keys(self.metadata())

    # -- searching -----------------------------------------------------------------------------
    def set_search_params(
        self,
        ef_search: int | None = None,
        nprobe: int | None = None,
        refine_factor: int | None = None,
    ) -> None:
        """Trade speed for recall (HNSW ``ef_search``, IVF ``nprobe``, ``refine_factor``)."""
        for key, value in (
            ("ef_search", ef_search),
            ("nprobe", nprobe),
            ("refine_factor", refine_factor),
        ):
            if value is not None:
                if value < 1:
                    raise InputError(f"{key} must be >= 1, got {value}")
                self.manifest.params[key] = int(value)

    def search_vectors(
        self, queries: np.ndarray, k: int = 10, where: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search of ``queries`` (``[D]`` or ``[Q, D]``): ``(scores [Q,k], rows [Q,k])``.

        ``where`` filters on metadata columns (see :mod:`biomedclip.index.filters`) inside the
        search, so the top-k is filled from matching rows; row -1 means fewer rows match than k.
        """
        q = np.asarray(queries, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query dimension {q.shape[-1]} != index dimension {self.dim}")
        if k < 1:
            raise InputError(f"top-k must be >= 1, got {k}")
        q = layouts.unit_rows(q)
        kind, params = self.kind, self.manifest.params
        if where is None:
            sp = layouts.search_parameters(kind, params)
            return self._index.search(q, int(k), params=sp)
        mask = self.mask(where)
        matching = int(mask.sum())
        sel = layouts.selector_for(mask)
        nlist = int(params.get("nlist", 0))
        nprobe = 0
        if nlist:  # visit more lists in proportion to the rows filtered out
            share = max(matching / max(len(self), 1), 1e-9)
            nprobe = min(nlist, int(np.ceil(int(params.get("nprobe") or 1) / share)))
        scores, rows = self._index.search(
            q, int(k), params=layouts.search_parameters(kind, params, sel, nprobe)
        )
        short = np.flatnonzero((rows >= 0).sum(1) < min(k, matching))
        if len(short):  # lists visited held too few matches: search those queries exhaustively
            s, r = self._exhaustive(q[short], int(k), mask, sel)
            scores[short], rows[short] = s, r
        return scores, rows

    def mask(self, where: Any) -> np.ndarray:
        """The boolean row mask of a filter (the last few are cached)."""
        key = repr(conditions(where))
        if key not in self._masks:
            if len(self._masks) >= 8:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = filter_mask(self.metadata(), where)
        return self._masks[key]

    def _exhaustive(self, q: np.ndarray, k: int, mask: np.ndarray, sel):
        """Every matching row: all IVF lists, or exact scores of the reconstructed subset."""
        if "nlist" in self.manifest.params:
            sp = layouts.search_parameters(
                self.kind, self.manifest.params, sel, int(self.manifest.params["nlist"])
            )
            return self._index.search(q, k, params=sp)
        rows = np.flatnonzero(mask)
        vecs = self._index.reconstruct_batch(rows.astype(np.int64))
        sims = q @ vecs.T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        scores = np.full((len(q), k), -np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        scores[:, : order.shape[1]] = np.take_along_axis(sims, order, 1)
        out[:, : order.shape[1]] = rows[order]
        return scores, out

    def search(self, queries: np.ndarray, k: int = 10, where: Any = None) -> list[list[Hit]]:
        """Top-``k`` hits with metadata for each query vector; ``where`` filters (see above)."""
        scores, rows = self.search_vectors(queries, min(k, max(len(self), 1)), where)
        return self.hits(scores, rows)

    def hits(self, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
        """:class:`Hit` lists (with metadata rows) for raw search results."""
        lookup = self.rows({int(r) for r in rows.ravel() if r >= 0})
        out = []
        for qs, qr in zip(scores, rows):
            hits = []
            for s, r in zip(qs, qr):
                if r < 0:
                    continue
                row = dict(lookup[int(r)])
                hit_id = str(row.pop("id"))
                hits.append(Hit(len(hits) + 1, hit_id, float(s), int(r), row))
            out.append(hits)
        return out

    def rows(self, rows: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Metadata of the given rows, by row number."""
        meta, wanted = self.metadata(), sorted(rows)
        if len(wanted) <= 4096:  # slices of the mapped table: no Arrow compute kernels to load
            return {r: meta.slice(r, 1).to_pylist()[0] for r in wanted}
        return dict(zip(wanted, meta.take(pa.array(wanted, pa.int64())).to_pylist()))

    # -- adding --------------------------------------------------------------------------------
    def add_embeddings(
        self, embeddings_dir: str | os.PathLike, progress: Progress | None = None
    ) -> AddReport:
        """Append an embedding dataset made by the same model; ids already indexed are skipped."""
        from biomedclip.embedding.store import DatasetManifest, iter_batches

        emb = DatasetManifest.read(embeddings_dir)
        check_same_model(self.manifest, emb, embeddings_dir)
        return self.add_batches(iter_batches(embeddings_dir), progress)

    def add_batches(
        self,
        batches: Iterable[EmbeddingBatch],
        progress: Progress | None = None,
        observer: Observer | None = None,
    ) -> AddReport:
        """Append vectors + metadata rows; commits a new index file and manifest at the end."""
        if self._mapped:  # a mapped index is read-only: load it to change it
            path = self.directory / self.manifest.index_file
            self._index, self._mapped = layouts.read_index(str(path), mmap=False), False
        seen = set(self.keys())
        before = len(self)
        skipped, tables, position = 0, [], 0
        for b in batches:
            keep = _first_occurrences(_keys(b.metadata), seen)
            skipped += len(b.metadata) - len(keep)
            if keep:
                vectors = layouts.unit_rows(b.vectors[keep])
                first = len(self)
                self._index.add(vectors)
                tables.append(b.metadata.take(pa.array(keep, pa.int64())))
                if observer:
                    observer(vectors, first, position + np.asarray(keep, np.int64))
            position += len(b.metadata)
            if progress:
                progress(len(b.metadata))
        added = len(self) - before
        if added or not self.manifest.index_file:
            self.commit(tables or [pa.table({"id": pa.array([], pa.string())})])
        return AddReport(added, skipped, len(self))

    def commit(self, new_tables: list[pa.Table]) -> None:
        """Write the index + new metadata part under fresh names, then the manifest; clean up."""
        m = self.manifest
        gen = _next_generation(self.directory)
        index_file, meta_file = f"index-{gen:05d}.faiss", f"meta-{gen:05d}.arrow"
        table = pa.concat_tables(new_tables, promote_options="default")
        _write_meta(table, self.directory / meta_file)
        _write_index_atomic(self._index, self.directory / index_file)
        old_index = m.index_file
        m.index_file = index_file
        m.metadata_files = [*m.metadata_files, meta_file]
        m.count = len(self)
        m.faiss_version = layouts.faiss_module().__version__
        m.write(self.directory)
        if old_index and old_index != index_file:
            (self.directory / old_index).unlink(missing_ok=True)
        self._metadata = None
        self._masks.clear()
        _remove_stale(self.directory, m)


def _read_meta(path: Path) -> pa.Table:
    if path.suffix == ".parquet":  # indexes written before metadata became Arrow IPC
        import pyarrow.parquet as pq

        return pq.read_table(path)
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _write_meta(table: pa.Table, path: Path) -> None:
    from biomedclip.io_utils import atomic_open

    table = table.combine_chunks()  # one record batch: row lookups in the mapped file stay O(1)
    with atomic_open(path) as f, pa.ipc.new_file(f, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


def _write_index_atomic(index, path: Path) -> None:
    """``faiss.write_index`` to a temporary name, fsync, rename (no in-memory copy of the index)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        layouts.faiss_module().write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _keys(table: pa.Table) -> list[tuple[str, str | None]]:
    ids = table.column("id").to_pylist()
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
        for pattern in ("index-*.faiss", "meta-*.parquet", "meta-*.arrow")
        for p in directory.glob(pattern)
        if p.stem.split("-")[1].isdigit()
    ]
    return max(gens, default=-1) + 1


def _remove_stale(directory: Path, manifest: IndexManifest) -> None:
    live = {manifest.index_file, *manifest.metadata_files, MANIFEST_FILE}
    patterns = ("index-*.faiss", "meta-*.parquet", "meta-*.arrow", ".index-*.tmp", ".meta-*.tmp")
    for pattern in patterns:  # older generations, and temp files of killed runs
        for p in directory.glob(pattern):
            if p.name not in live:
                p.unlink(missing_ok=True)


def check_same_model(index: IndexManifest, emb: DatasetManifest, source: object) -> None:
    if emb.dim != index.dim:
        raise InputError(
            f"{source}: embeddings of dim {emb.dim} cannot go into an index of dim {index.dim}"
        )
    index.check_model(emb.model, emb.model_sha256, emb.dim)
