"""Answering questions with a ``VQAModel``: batched prediction, evaluation runs, and ``ask``.

Images are encoded once each (through :class:`~biomedclip.vqa.features.FeatureCache`, on disk when
a cache folder is given), then questions are answered in batches from the cached image tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from biomedclip.errors import InputError
from biomedclip.tokenizer import Tokenizer
from biomedclip.vqa.data import QAItem
from biomedclip.vqa.features import FeatureCache
from biomedclip.vqa.model import VQAModel


@dataclass
class Answer:
    """Top answers of one question with their probabilities (softmax over the vocabulary)."""

    answers: list[str]
    probabilities: list[float]

    @property
    def best(self) -> str:
        return self.answers[0]

    def to_dict(self) -> dict:
        return {
            "answers": [
                {"answer": a, "probability": p} for a, p in zip(self.answers, self.probabilities)
            ]
        }


def tokenize_questions(tokenizer: Tokenizer, questions: Sequence[str], max_tokens: int):
    batch = tokenizer(list(questions), context_length=max_tokens, warn=False)
    return batch.input_ids, batch.attention_mask


@torch.no_grad()
def answer_tokens_batch(
    model: VQAModel,
    tokenizer: Tokenizer,
    questions: Sequence[str],
    image_tokens: torch.Tensor,
    top_k: int = 5,
    autocast=contextlib.nullcontext,
) -> list[Answer]:
    """Answers for questions paired with image tokens ``[B, T, W]``."""
    device = next(model.parameters()).device
    ids, mask = tokenize_questions(tokenizer, questions, model.fusion_config.max_question_tokens)
    with autocast():
        logits = model(ids.to(device), mask.to(device), image_tokens=image_tokens.to(device))
    probs = logits.float().softmax(dim=-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    words = model.vocab.answers
    return [
        Answer([words[j] for j in idx.tolist()], [float(v) for v in val.tolist()])
        for val, idx in zip(top.values, top.indices)
    ]


def predict(
    model: VQAModel,
    tokenizer: Tokenizer,
    preprocess,
    items: Sequence[QAItem],
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    top_k: int = 1,
    autocast=contextlib.nullcontext,
    progress: bool = False,
) -> tuple[list[Answer | None], dict[str, str]]:
    """One :class:`Answer` per item (None where its image could not be read) and the failures."""
    was_training = model.training
    model.eval()
    try:
        cache = FeatureCache(cache_dir, model.backbone, preprocess)
        tokens = cache.tokens([it.image for it in items], batch_size, workers, progress=progress)
        out: list[Answer | None] = [None] * len(items)
        ok = [i for i, it in enumerate(items) if it.image in tokens]
        for start in range(0, len(ok), batch_size):
            rows = ok[start : start + batch_size]
            stacked = torch.stack([tokens[items[i].image] for i in rows])
            answers = answer_tokens_batch(
                model, tokenizer, [items[i].question for i in rows], stacked, top_k, autocast
            )
            for i, a in zip(rows, answers):
                out[i] = a
        return out, cache.failures
    finally:
        model.train(was_training)


def ask(
    model: VQAModel,
    preprocess,
    tokenizer: Tokenizer,
    image,
    question: str,
    top_k: int = 5,
    read_options=None,
) -> Answer:
    """Answer ``question`` about ``image`` (a path, bytes or a PIL image; DICOM, NIfTI, TIFF ...
    through :func:`biomedclip.imaging.read_image`, the first frame / middle slice / thumbnail)."""
    from PIL import Image

    from biomedclip.imaging import ReadOptions, read_image

    if not question or not question.strip():
        raise InputError("the question is empty")
    if not isinstance(image, Image.Image):
        options = read_options or ReadOptions(mode=None, wsi="thumbnail")
        image = read_image(image, options).images[0]
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        tokens = model.image_tokens(preprocess(image)[None].to(device))
    return answer_tokens_batch(model, tokenizer, [question], tokens, top_k)[0]
