"""Cross-modal search: embed a text or image query with the model, then look it up in an index.

The index manifest records the model that embedded the collection; :class:`Searcher` refuses a
model that differs (other weights or another dimension), because its vectors live in another space.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from biomedclip.errors import InputError
from biomedclip.index.store import Hit, VectorIndex

if TYPE_CHECKING:
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer


def model_identity(model: BiomedCLIP) -> tuple[str | None, str | None, int]:
    """``(source, sha256, dim)`` of a loaded model, as compared with an index manifest."""
    info = getattr(model, "load_info", None)
    return (
        getattr(info, "source", None),
        getattr(info, "sha256", None),
        int(model.config.embed_dim),
    )


class Searcher:
    """A model and an index that belong together; ``search_text`` / ``search_image`` return hits."""

    def __init__(
        self,
        model: BiomedCLIP,
        tokenizer: Tokenizer,
        preprocess,
        index: VectorIndex,
        check_model: bool = True,
    ):
        if check_model:
            index.manifest.check_model(*model_identity(model))
        elif model.config.embed_dim != index.dim:
            raise InputError(f"model dim {model.config.embed_dim} != index dim {index.dim}")
        self.model, self.tokenizer, self.preprocess, self.index = (
            model,
            tokenizer,
            preprocess,
            index,
        )

    @classmethod
    def from_model(
        cls,
        model: BiomedCLIP,
        tokenizer: Tokenizer | None,
        preprocess,
        index: VectorIndex | str | os.PathLike,
        check_model: bool = True,
    ) -> Searcher:
        """``index`` may be an opened :class:`VectorIndex` or its directory."""
        if not isinstance(index, VectorIndex):
            index = VectorIndex.open(index)
        tokenizer = tokenizer or getattr(model, "tokenizer", None)
        preprocess = preprocess or getattr(model, "preprocess", None)
        return cls(model, tokenizer, preprocess, index, check_model)

    # ---- embedding queries ---------------------------------------------------------------------
    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.tokenizer is None:
            raise InputError("no tokenizer: load the model with biomedclip.load or pass one")
        batch = self.tokenizer(list(texts)).to(self.model.device)
        feats = self.model.encode_text(batch.input_ids, batch.attention_mask, normalize=True)
        return feats.float().cpu().numpy()

    @torch.inference_mode()
    def embed_images(self, images: Sequence[str | os.PathLike]) -> np.ndarray:
        from biomedclip.imaging import load_image
        from biomedclip.transforms import eval_transform

        preprocess = self.preprocess or eval_transform(self.model.config.preprocess)
        pixels = torch.stack([preprocess(load_image(p, mode=None)) for p in images])
        feats = self.model.encode_image(
            pixels.to(self.model.device, self.model.dtype), normalize=True
        )
        return feats.float().cpu().numpy()

    # ---- searching -------------------------------------------------------------------------------
    def search_vectors(
        self, queries: np.ndarray, k: int = 10, modality: str | None = None
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query vector; ``modality`` keeps only rows of that modality."""
        if modality is None:
            return self.index.search(queries, k)
        n = len(self.index)
        fetch = min(n, k * 8)
        while True:
            results = self.index.search(queries, fetch)
            kept = [[h for h in hits if h.metadata.get("modality") == modality] for hits in results]
            if all(len(h) >= k for h in kept) or fetch >= n:
                break
            fetch = min(n, fetch * 4)
        out = []
        for hits in kept:
            hits = hits[:k]
            for i, h in enumerate(hits):
                h.rank = i + 1
            out.append(hits)
        return out

    def search_text(
        self, texts: str | Sequence[str], k: int = 10, modality: str | None = None
    ) -> list[list[Hit]]:
        """One hit list per text query."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("no query text given")
        return self.search_vectors(self.embed_texts(texts), k, modality)

    def search_image(
        self,
        images: str | os.PathLike | Sequence[str | os.PathLike],
        k: int = 10,
        modality: str | None = None,
    ) -> list[list[Hit]]:
        """One hit list per query image (paths; decoded with :func:`biomedclip.load_image`)."""
        images = [images] if isinstance(images, (str, Path, os.PathLike)) else list(images)
        if not images:
            raise InputError("no query image given")
        return self.search_vectors(self.embed_images(images), k, modality)
