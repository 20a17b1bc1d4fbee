"""The index manifest: which model made the vectors, their dimension, the FAISS layout, the files.

``manifest.json`` is the commit point of an index directory: an index file or metadata part that it
does not name is ignored, so a crash while building or adding never leaves a corrupt index.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import InputError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class ModelMismatchError(InputError):
    """A query model differs from the model that embedded the indexed vectors."""


@dataclass
class IndexManifest:
    """Everything needed to reopen and safely query an index directory."""

    model: str | None
    model_sha256: str | None
    dim: int
    normalized: bool
    metric: str  # "inner_product" (cosine on unit vectors)
    kind: str  # "flat" | "ivf" | "hnsw" | "ivfpq"
    params: dict[str, Any]
    count: int
    index_file: str
    metadata_files: list[str] = field(default_factory=list)
    faiss_version: str = ""
    # how the search parameters were chosen: recall target, held-out queries, recall measured
    tuning: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int = 0  # approximate RAM of the loaded index
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: str | Path) -> IndexManifest:
        path = Path(directory) / MANIFEST_FILE
        if not path.is_file():
            raise InputError(f"{directory}: not an index directory (no {MANIFEST_FILE})")
        try:
            d = json.loads(path.read_text())
            version = int(d.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise InputError(
                    f"{path}: index format {version} is newer than this biomedclip reads "
                    f"({FORMAT_VERSION}); upgrade biomedclip"
                )
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{path}: unreadable index manifest ({e})") from e

    def write(self, directory: str | Path) -> None:
        from biomedclip.io_utils import atomic_write_json

        atomic_write_json(Path(directory) / MANIFEST_FILE, self.to_dict())

    # ---- model identity ----------------------------------------------------------------------
    def check_model(self, source: str | None, sha256: str | None, dim: int) -> None:
        """Refuse a query model that is not the one that made the indexed vectors.

        Identity is the weights' sha256 when both sides know it, else the model source (hub id or
        resolved path); the embedding dimension must always agree.
        """
        theirs = f"{self.model!r} (dim {self.dim}{_sha_note(self.model_sha256)})"
        ours = f"{source!r} (dim {dim}{_sha_note(sha256)})"
        problem = None
        if dim != self.dim:
            problem = "the embedding dimensions differ"
        elif self.model_sha256 and sha256:
            if self.model_sha256 != sha256:
                problem = "the weights differ (sha256)"
        elif self.model is None:
            problem = "the index does not record its model"
        elif canonical_source(self.model) != canonical_source(source):
            problem = "the model sources differ"
        if problem:
            raise ModelMismatchError(
                f"the index was built with model {theirs} but the query uses model {ours}: "
                f"{problem}. Query with the indexing model (--model {self.model}) or rebuild "
                "the index with this one."
            )


def _sha_note(sha: str | None) -> str:
    return f", sha256 {sha[:12]}" if sha else ""


def canonical_source(source: str | None) -> str | None:
    """Hub ids as written; existing local paths resolved, so ``./m`` and ``/abs/m`` agree."""
    if source is None:
        return None
    s = str(source)
    if s.startswith("hf-hub:"):
        return s
    p = Path(s).expanduser()
    return str(p.resolve()) if p.exists() else s
