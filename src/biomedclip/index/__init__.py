"""Vector index over embedding datasets (FAISS): build, tune, add, search, filter.

::

    from biomedclip.index import IndexSpec, VectorIndex, build_index, Searcher
    build_index("embeddings/", "my-index/")      # layout by size, search params tuned to recall
    index = VectorIndex.open("my-index/")         # memory-mapped
    hits = index.search(vectors, k=10, where={"modality": "image", "year": [2020, 2021]})
    searcher = Searcher.from_model(model, "my-index/")
    hits = searcher.search_text("chest X-ray with pleural effusion", k=10)[0]

Embedding datasets are read through :mod:`biomedclip.embedding.store`, the format's one owner.
"""

from biomedclip.index.build import build_index, build_index_from_arrays
from biomedclip.index.filters import Condition, filter_mask, parse_filter
from biomedclip.index.manifest import IndexManifest, ModelMismatchError
from biomedclip.index.search import Searcher
from biomedclip.index.spec import IndexSpec
from biomedclip.index.store import AddReport, Hit, VectorIndex

__all__ = [
    "AddReport",
    "Condition",
    "Hit",
    "IndexManifest",
    "IndexSpec",
    "ModelMismatchError",
    "Searcher",
    "VectorIndex",
    "build_index",
    "build_index_from_arrays",
    "filter_mask",
    "parse_filter",
]
