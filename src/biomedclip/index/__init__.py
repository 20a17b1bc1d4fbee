"""Vector index over embedding datasets (FAISS): build, add, search, with a model-identity manifest.

::

    from biomedclip.index import IndexSpec, VectorIndex, build_index, Searcher
    build_index("embeddings/", "my-index/")                 # exact up to 100k vectors, ANN above
    searcher = Searcher.from_model(model, tokenizer, preprocess, "my-index/")
    hits = searcher.search_text("chest X-ray with pleural effusion", k=10)[0]
"""

from biomedclip.index.embeddings import (
    EmbeddingBatch,
    EmbeddingManifest,
    iter_embeddings,
    read_embeddings,
    write_embeddings,
)
from biomedclip.index.manifest import IndexManifest, ModelMismatchError
from biomedclip.index.search import Searcher
from biomedclip.index.spec import IndexSpec
from biomedclip.index.store import (
    AddReport,
    Hit,
    VectorIndex,
    build_index,
    build_index_from_arrays,
)

__all__ = [
    "AddReport",
    "EmbeddingBatch",
    "EmbeddingManifest",
    "Hit",
    "IndexManifest",
    "IndexSpec",
    "ModelMismatchError",
    "Searcher",
    "VectorIndex",
    "build_index",
    "build_index_from_arrays",
    "iter_embeddings",
    "read_embeddings",
    "write_embeddings",
]
