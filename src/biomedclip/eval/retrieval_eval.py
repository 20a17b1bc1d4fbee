"""Retrieval evaluation of a model on image-caption pairs: embed both sides, rank, report.

Metrics are those of :func:`biomedclip.eval.retrieval.retrieval_metrics` (Recall@K both directions, mean and
median rank; exact, computed block-wise, so 100k pairs need ~2 GiB at most). A pair whose image
cannot be read is left out and listed in ``skipped``; the rest are still evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from biomedclip.errors import BiomedCLIPError, InputError
from biomedclip.eval.pairs import Pair
from biomedclip.eval.retrieval import metrics_from_ranks, retrieval_ranks

if TYPE_CHECKING:
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass
class RetrievalReport:
    """Metrics over the evaluated pairs, and the pairs that could not be evaluated (with why)."""

    metrics: dict[str, float]
    n_pairs: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    truncated_captions: int = 0
    ranks: dict[str, list[int]] = field(default_factory=dict)  # 1-based, per evaluated pair
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


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, pairs: Sequence[Pair], preprocess):
        self.pairs, self.preprocess = pairs, preprocess

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from biomedclip.imaging import load_image

        try:
            return i, self.preprocess(load_image(self.pairs[i].image, mode=None)), None
        except (BiomedCLIPError, OSError, ValueError) as e:
            return i, None, str(e)


def _collate(items):
    return items


@torch.inference_mode()
def embed_pair_images(
    model: BiomedCLIP,
    preprocess,
    pairs: Sequence[Pair],
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """Unit image embeddings by pair index, and an error message per unreadable image."""
    loader = torch.utils.data.DataLoader(
        _ImageDataset(pairs, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    feats: dict[int, torch.Tensor] = {}
    errors: dict[int, str] = {}
    for items in loader:
        ok = [(i, x) for i, x, err in items if err is None]
        errors.update({i: err for i, _, err in items if err is not None})
        if ok:
            pixels = torch.stack([x for _, x in ok]).to(model.device, model.dtype)
            out = F.normalize(model.encode_image(pixels).float(), dim=-1).cpu()
            feats.update({i: row for (i, _), row in zip(ok, out)})
        if progress:
            progress(len(items))
    return feats, errors


@torch.inference_mode()
def embed_texts(
    model: BiomedCLIP,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = 128,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, int]:
    """Unit text embeddings (batched by token length, so short texts are not padded to long ones)
    and the number of texts truncated to the context length."""
    lengths = tokenizer.count_tokens(list(texts))
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty(len(texts), model.config.embed_dim)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], warn=False).to(model.device)
        feats = model.encode_text(batch.input_ids, batch.attention_mask)
        out[idx] = F.normalize(feats.float(), dim=-1).cpu()
        if progress:
            progress(len(idx))
    limit = tokenizer.context_length
    return out, sum(n > limit for n in lengths)


def evaluate_retrieval(
    model: BiomedCLIP,
    tokenizer: Tokenizer,
    preprocess,
    pairs: Sequence[Pair],
    batch_size: int = 64,
    workers: int = 0,
    ks: Sequence[int] = (1, 5, 10),
    progress: Progress | None = None,
) -> RetrievalReport:
    """Embed ``pairs`` with ``model`` and compute image->text and text->image retrieval metrics."""
    if not pairs:
        raise InputError("no pairs to evaluate")
    image_feats, errors = embed_pair_images(model, preprocess, pairs, batch_size, workers, progress)
    kept = sorted(image_feats)
    skipped = [
        {"id": pairs[i].id, "image": str(pairs[i].image), "error": msg}
        for i, msg in sorted(errors.items())
    ]
    for s in skipped:
        log.warning("skipped pair %s: %s", s["id"], s["error"])
    if not kept:
        raise InputError(
            f"none of the {len(pairs)} images could be read (first: {skipped[0]['error']})"
        )
    text_feats, truncated = embed_texts(
        model, tokenizer, [pairs[i].caption for i in kept], batch_size, progress
    )
    images = torch.stack([image_feats[i] for i in kept])
    ranks0 = retrieval_ranks(images, text_feats)  # exact; block-wise similarity matrix
    metrics = metrics_from_ranks(ranks0, ks)
    ranks = {k: (v + 1).tolist() for k, v in ranks0.items()}
    return RetrievalReport(
        metrics, len(kept), skipped, truncated, ranks, [pairs[i].id for i in kept]
    )
