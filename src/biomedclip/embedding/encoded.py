"""What the encoding engine returns to in-memory callers: :class:`Encoded`, and the sink that
collects it from :func:`~biomedclip.embedding.engine.run_local`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biomedclip.embedding.batching import Failure
from biomedclip.embedding.sources import Item, Source


@dataclass
class Encoded:
    """Unit embeddings of a list of inputs, one row per encoded image or text.

    ``input_index[r]`` is the position in the input list of row ``r``; ``parts[r]`` describes the
    image of a multi-image input (``{"frame": 5}``, ``{"plane": "axial", "slice": 40}``, a slide
    tile's ``x``/``y``/``level``) and is ``{}`` for plain inputs. ``failures`` lists the inputs that
    could not be encoded (the others are). ``truncated``: texts cut at the context length.
    """

    ids: list[str]
    embeddings: np.ndarray
    input_index: np.ndarray
    parts: list[dict[str, Any]]
    failures: list[Failure] = field(default_factory=list)
    truncated: int = 0
    n_inputs: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask over the inputs: True where at least one row was encoded."""
        mask = np.zeros(self.n_inputs, dtype=bool)
        mask[self.input_index] = True
        return mask

    def per_input(self) -> tuple[np.ndarray, np.ndarray]:
        """One unit embedding per encoded input (the renormalised mean of its rows) and the input
        positions they belong to, in input order."""
        positions = np.unique(self.input_index)
        if len(positions) == len(self.input_index):
            order = np.argsort(self.input_index, kind="stable")
            return self.embeddings[order], self.input_index[order]
        dim = self.embeddings.shape[1]
        sums = np.zeros((len(positions), dim), dtype=np.float64)
        np.add.at(sums, np.searchsorted(positions, self.input_index), self.embeddings)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32), positions

    def describe(self, row: int) -> str:
        """A short label for a row's part: ``frame 5``, ``axial 40``, ``tile x=224 y=0``."""
        return describe_part(self.parts[row])


def describe_part(part: dict[str, Any]) -> str:
    if "tile" in part or ("x" in part and "y" in part):
        return f"tile x={part['x']} y={part['y']}"
    if "slice" in part:
        return f"{part.get('plane', 'slice')} {part['slice']}"
    if "frame" in part:
        return f"frame {part['frame']}"
    if "page" in part:
        return f"page {part['page']}"
    return ""


class EncodedSink:
    """Collects rows with their parts (the in-memory counterpart of the Parquet writer)."""

    keeps_parts = True

    def __init__(self, source: Source, dim: int):
        self.position = {it.id: i for i, it in enumerate(source.items())}
        self.n_inputs = len(self.position)
        self.dim = dim
        self.rows: list[tuple[int, int, dict, np.ndarray]] = []  # (input, part #, part, vector)
        self.failures: list[Failure] = []

    def add_parts(
        self,
        items: Sequence[Item],
        owners: Sequence[int],
        parts: Sequence[dict],
        modality: str,
        embeddings: np.ndarray,
    ) -> None:
        counter: dict[int, int] = {}
        for owner, part, vec in zip(owners, parts, embeddings):
            pos = self.position[items[owner].id]
            k = counter.get(pos, 0)
            counter[pos] = k + 1
            self.rows.append((pos, k, part, vec))

    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None:
        self.add_parts(items, range(len(items)), [{}] * len(items), modality, embeddings)

    def add_failures(self, failures: Sequence[Failure]) -> None:
        self.failures.extend(failures)

    def result(self, modality: str, truncated: int = 0) -> Encoded:
        rows = sorted(self.rows, key=lambda r: (r[0], r[1]))
        ids_by_pos = {v: k for k, v in self.position.items()}
        vecs = (
            np.stack([r[3] for r in rows]).astype(np.float32, copy=False)
            if rows
            else np.zeros((0, self.dim), np.float32)
        )
        order = {f.id: self.position.get(f.id, len(self.position)) for f in self.failures}
        failures = sorted(self.failures, key=lambda f: order[f.id])
        return Encoded(
            ids=[ids_by_pos[r[0]] for r in rows],
            embeddings=vecs,
            input_index=np.array([r[0] for r in rows], dtype=np.int64),
            parts=[r[2] for r in rows],
            failures=failures,
            truncated=truncated,
            n_inputs=self.n_inputs,
        )
