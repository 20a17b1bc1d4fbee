"""Cross-modal search: encode text or image queries with the one :class:`Encoder`, then look them
up in an index.

The index manifest records the model that embedded the collection; :class:`Searcher` refuses a
model that differs (other weights or another dimension), because its vectors live in another space.
Image queries go through the encoder's medical-image reading (DICOM frames, NIfTI slices, slide
tiles): a multi-image input is one query, the renormalised mean of its parts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biomedclip.errors import InputError
from biomedclip.index.store import Hit, VectorIndex

if TYPE_CHECKING:
    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.model import BiomedCLIP


def model_identity(model: BiomedCLIP) -> tuple[str | None, str | None, int]:
    """``(source, sha256, dim)`` of a loaded model, as compared with an index manifest."""
    info = getattr(model, "load_info", None)
    return (
        getattr(info, "source", None),
        getattr(info, "sha256", None),
        int(model.config.embed_dim),
    )


@dataclass
class ImageQueries:
    """Results of image queries: one hit list per input (None where it failed) + the failures."""

    hits: list[list[Hit] | None]
    failures: list[Any]  # biomedclip.embedding Failure records (id, path, modality, error)


class Searcher:
    """An encoder and an index that belong together; ``search_text`` / ``search_images``."""

    def __init__(self, encoder: Encoder, index: VectorIndex, check_model: bool = True):
        model = encoder.model
        if check_model:
            index.manifest.check_model(*model_identity(model))
        elif model.config.embed_dim != index.dim:
            raise InputError(f"model dim {model.config.embed_dim} != index dim {index.dim}")
        self.encoder, self.index = encoder, index

    @classmethod
    def from_model(
        cls,
        model: BiomedCLIP,
        index: VectorIndex | str | os.PathLike,
        settings: EncoderSettings | None = None,
        preprocess=None,
        tokenizer=None,
        check_model: bool = True,
    ) -> Searcher:
        """``index`` may be an opened :class:`VectorIndex` or its directory."""
        from biomedclip.embedding import Encoder

        if not isinstance(index, VectorIndex):
            index = VectorIndex.open(index)
        encoder = Encoder(model, preprocess=preprocess, tokenizer=tokenizer, settings=settings)
        return cls(encoder, index, check_model)

    # ---- embedding queries ---------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_texts(list(texts)).embeddings

    def embed_images(self, images: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """``(vectors [n_ok, D], input positions [n_ok], failures)``; multi-part inputs averaged."""
        encoded = self.encoder.encode_images(list(images))
        vectors, positions = encoded.per_input()
        return vectors, positions, list(encoded.failures)

    # ---- searching -------------------------------------------------------------------------------
    def search_vectors(
        self, queries: np.ndarray, k: int = 10, where: Any = None
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query vector; ``where`` filters on metadata columns first."""
        return self.index.search(queries, k, where)

    def search_text(
        self,
        texts: str | Sequence[str],
        k: int = 10,
        where: Any = None,
        modality: str | None = None,
    ) -> list[list[Hit]]:
        """One hit list per text query (``modality`` is shorthand for a filter on it)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("no query text given")
        return self.search_vectors(self.embed_texts(texts), k, _where(where, modality))

    def search_images(
        self,
        images: str | os.PathLike | Sequence[Any],
        k: int = 10,
        where: Any = None,
        modality: str | None = None,
    ) -> ImageQueries:
        """One hit list per image input; an unreadable image is a failure, the rest are searched."""
        images = [images] if isinstance(images, (str, Path, os.PathLike, bytes)) else list(images)
        if not images:
            raise InputError("no query image given")
        vectors, positions, failures = self.embed_images(images)
        out: list[list[Hit] | None] = [None] * len(images)
        if len(vectors):
            for pos, hits in zip(
                positions, self.search_vectors(vectors, k, _where(where, modality))
            ):
                out[int(pos)] = hits
        return ImageQueries(out, failures)

    def search_image(
        self,
        images: str | os.PathLike | Sequence[Any],
        k: int = 10,
        where: Any = None,
        modality: str | None = None,
    ) -> list[list[Hit]]:
        """Like :meth:`search_images`, raising the first failure (for a single known-good image)."""
        res = self.search_images(images, k, where, modality)
        if res.failures:
            f = res.failures[0]
            raise InputError(f"{f.path or f.id}: {f.error}")
        return [h for h in res.hits if h is not None]


def _where(where: Any, modality: str | None) -> Any:
    if modality is None:
        return where
    from biomedclip.index.filters import Condition, conditions

    return [*conditions(where), Condition("modality", "=", modality)]
