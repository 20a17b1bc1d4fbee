"""Retrieval evaluation of a model on image-caption pairs: embed both sides through the encoding
engine (:class:`biomedclip.embedding.Encoder`), rank, report.

Metrics are those of :func:`biomedclip.eval.retrieval.retrieval_metrics` (Recall@K both
directions, mean and median rank; exact, computed block-wise, so 100k pairs need ~2 GiB at most).
A pair whose image cannot be read is left out and listed in ``skipped``; the rest are still
evaluated. :meth:`RetrievalReport.to_result` gives the same record format as the classification
protocols (clip_benchmark's ``image_retrieval_recall@K`` / ``text_retrieval_recall@K``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from biomedclip.errors import InputError
from biomedclip.eval.retrieval import expected_ranks, metrics_from_ranks, retrieval_ranks
from biomedclip.pairs import Pair

log = logging.getLogger(__name__)


@dataclass
class RetrievalReport:
    """Metrics over the evaluated pairs, and the pairs that could not be evaluated (with why)."""

    metrics: dict[str, float]
    n_pairs: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    truncated_captions: int = 0
    ranks: dict[str, list[float]] = field(default_factory=dict)  # 1-based, per evaluated pair
    ids: list[str] = field(default_factory=list)

    def to_dict(self, with_ranks: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n_pairs": self.n_pairs,
            "metrics": self.metrics,
            "skipped": self.skipped,
            "truncated_captions": self.truncated_captions,
        }
        if with_ranks:
            d["ranks"] = {"ids": self.ids, **self.ranks}
        return d

    def to_result(self, dataset: str, model: str):
        """An :class:`~biomedclip.eval.results.EvalResult` (``task="zeroshot_retrieval"``)."""
        from biomedclip.eval.results import EvalResult

        m = dict(self.metrics)
        for k in (1, 5, 10):
            # clip_benchmark: "image retrieval" = text query -> image, and vice versa
            if f"text_to_image_R@{k}" in m:
                m[f"image_retrieval_recall@{k}"] = m[f"text_to_image_R@{k}"]
                m[f"text_retrieval_recall@{k}"] = m[f"image_to_text_R@{k}"]
        failures = [{"id": s["id"], "error": s["error"]} for s in self.skipped]
        return EvalResult(
            dataset, "zeroshot_retrieval", model, m, n=self.n_pairs, failures=failures
        )


def evaluate_retrieval(
    encoder, pairs: Sequence[Pair], ks: Sequence[int] = (1, 5, 10)
) -> RetrievalReport:
    """Embed ``pairs`` with ``encoder`` and compute image->text and text->image retrieval metrics."""
    if not pairs:
        raise InputError("no pairs to evaluate")
    images = encoder.encode_images([p.image for p in pairs], ids=[p.id for p in pairs])
    image_emb, kept = images.per_input()
    kept = [int(i) for i in kept]
    by_id = {p.id: p for p in pairs}
    skipped = [
        {
            "id": f.id,
            "image": str(by_id[f.id].image) if f.id in by_id else str(f.path),
            "error": str(f.error),
        }
        for f in images.failures
    ]
    for s in skipped:
        log.warning("skipped pair %s: %s", s["id"], s["error"])
    if not kept:
        raise InputError(
            f"none of the {len(pairs)} images could be read (first: {skipped[0]['error']})"
        )
    texts = encoder.encode_texts([pairs[i].caption for i in kept], ids=[pairs[i].id for i in kept])
    if texts.failures:
        raise InputError(f"caption of pair {texts.failures[0].id}: {texts.failures[0].error}")
    text_emb = np.zeros_like(image_emb)
    text_emb[np.asarray(texts.input_index)] = texts.embeddings
    ranks0 = retrieval_ranks(torch.from_numpy(image_emb), torch.from_numpy(text_emb))
    metrics = metrics_from_ranks(ranks0, ks)
    ranks = {  # 1-based; a tie gives the expected rank (x.5 where it is not whole)
        k: [int(x) if x == int(x) else x for x in (expected_ranks(v) + 1).tolist()]
        for k, v in ranks0.items()
    }
    return RetrievalReport(
        metrics, len(kept), skipped, int(texts.truncated), ranks, [pairs[i].id for i in kept]
    )
