"""The embeddings dataset format and its one owner: ``part-*.parquet`` + ``manifest.json`` + ``errors.jsonl``.

Every reader and writer of the format goes through this package: ``layout`` (file names, schema,
manifest keys, live files), ``writer`` (:class:`EmbeddingWriter`, :func:`write_embeddings`),
``reader`` (:func:`iter_batches`, :func:`read_embeddings`, :func:`metadata_columns`). Index,
search and evaluation use these functions, never the files directly.

While a job runs, every encoded batch is written at once as ``batch-NNNNNNNN.parquet`` (temporary
file, fsync, rename), so a kill loses at most the batch in flight. When the job completes, the
batches are compacted into ``part-NNNNNN.parquet`` files; each part names the batch range it
covers in its schema metadata, is renamed into place, and only then are those batches deleted.
Readers take every part plus the batches no part covers (:func:`part_files`), so the dataset is
readable and duplicate-free at every moment; a rerun finishes an interrupted compaction, reads the
ids already present and skips them. After a completed job only ``part-*.parquet`` files remain.
"""

from biomedclip.embedding.store.layout import (
    BATCH_RE,
    COMPAT_KEYS,
    COVERS_KEY,
    ERRORS,
    MANIFEST,
    PART_RE,
    STORAGE_DTYPES,
    TEMP_RE,
    DatasetFiles,
    DatasetInfo,
    DatasetManifest,
    dataset_files,
    output_schema,
    part_files,
    read_manifest,
)
from biomedclip.embedding.store.reader import (
    EmbeddingBatch,
    iter_batches,
    metadata_columns,
    read_embeddings,
)
from biomedclip.embedding.store.writer import EmbeddingWriter, write_embeddings

__all__ = [
    "BATCH_RE",
    "COMPAT_KEYS",
    "COVERS_KEY",
    "ERRORS",
    "MANIFEST",
    "PART_RE",
    "STORAGE_DTYPES",
    "TEMP_RE",
    "DatasetFiles",
    "DatasetInfo",
    "DatasetManifest",
    "EmbeddingBatch",
    "EmbeddingWriter",
    "dataset_files",
    "iter_batches",
    "metadata_columns",
    "output_schema",
    "part_files",
    "read_embeddings",
    "read_manifest",
    "write_embeddings",
]
