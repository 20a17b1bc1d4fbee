"""Zero-shot classification: label prompts -> class embeddings -> softmax over labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from biomedclip.errors import InputError
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer

# The model card's prompt (the official example notebook's expected outputs use it).
MODEL_CARD_TEMPLATES = ("this is a photo of {}",)
# The prompt ensemble of the BiomedCLIP paper's zero-shot evaluation.
PAPER_TEMPLATES = ("this is an image of {}", "{} presented in image", "a photo of {}")
TEMPLATE_SETS = {"model-card": MODEL_CARD_TEMPLATES, "paper": PAPER_TEMPLATES}

ImageInput = str | Path | Image.Image


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Labels from a list or a comma-separated string; refuses empty, blank or duplicate labels."""
    if isinstance(labels, str):
        labels = labels.split(",")
    out = [str(label).strip() for label in labels]
    if not out:
        raise InputError("no labels given: pass at least one label")
    for i, label in enumerate(out):
        if not label:
            raise InputError(f"label #{i + 1} is empty (labels: {list(labels)!r})")
    dupes = sorted({label for label in out if out.count(label) > 1})
    if dupes:
        raise InputError(f"duplicate labels: {dupes}")
    return out


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """A template-set name (``model-card``, ``paper``), one template, or a list of templates."""
    if templates is None:
        return MODEL_CARD_TEMPLATES
    if isinstance(templates, str):
        templates = TEMPLATE_SETS.get(templates, (templates,))
    out = tuple(templates)
    if not out:
        raise InputError("no templates given")
    for t in out:
        if "{}" not in t:
            raise InputError(f"template {t!r} has no '{{}}' placeholder for the label")
    return out


@torch.inference_mode()
def build_classifier(
    model: BiomedCLIP,
    tokenizer: Tokenizer,
    labels: Sequence[str],
    templates: str | Sequence[str] | None = None,
) -> torch.Tensor:
    """Unit-norm class embeddings ``[C, D]``: per label, the mean of its normalised prompt embeddings."""
    labels = parse_labels(labels)
    temps = resolve_templates(templates)
    prompts = [t.format(label) for label in labels for t in temps]
    batch = tokenizer(prompts).to(model.device)
    emb = model.encode_text(batch.input_ids, batch.attention_mask, normalize=True).float()
    emb = emb.reshape(len(labels), len(temps), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


@dataclass
class ZeroShotResult:
    """Probabilities ``[N, C]`` over ``labels`` for each input."""

    labels: list[str]
    probs: torch.Tensor
    logits: torch.Tensor

    def top_k(self, k: int = 5) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.labels))
        vals, idx = self.probs.topk(k, dim=-1)
        return [
            [(self.labels[j], float(v)) for v, j in zip(row_v.tolist(), row_i.tolist())]
            for row_v, row_i in zip(vals, idx)
        ]

    def to_dicts(self) -> list[dict[str, float]]:
        return [dict(zip(self.labels, row.tolist())) for row in self.probs]


@torch.inference_mode()
def classify_features(
    model: BiomedCLIP, image_features: torch.Tensor, classifier: torch.Tensor, labels: list[str]
) -> ZeroShotResult:
    feats = F.normalize(image_features.float(), dim=-1)
    logits = model.logit_scale.exp().float() * feats @ classifier.T
    return ZeroShotResult(list(labels), logits.softmax(dim=-1).cpu(), logits.cpu())


@torch.inference_mode()
def encode_images(
    model: BiomedCLIP,
    images: Sequence[ImageInput] | torch.Tensor,
    preprocess,
    batch_size: int = 32,
) -> torch.Tensor:
    """Embed paths / PIL images (decoded with :func:`biomedclip.imaging.load_image`) or a tensor batch."""
    if isinstance(images, torch.Tensor):
        return model.encode_image(images.to(model.device, model.dtype))
    from biomedclip.imaging import load_image

    out = []
    for start in range(0, len(images), batch_size):
        chunk = [
            im if isinstance(im, Image.Image) else load_image(im, mode=None)
            for im in images[start : start + batch_size]
        ]
        pixels = torch.stack([preprocess(im) for im in chunk]).to(model.device, model.dtype)
        out.append(model.encode_image(pixels))
    if not out:
        raise InputError("no images given")
    return torch.cat(out)


def zero_shot(
    model: BiomedCLIP,
    images: Sequence[ImageInput] | torch.Tensor | ImageInput,
    labels: str | Sequence[str],
    templates: str | Sequence[str] | None = None,
    tokenizer: Tokenizer | None = None,
    preprocess=None,
    batch_size: int = 32,
) -> ZeroShotResult:
    """Classify images among ``labels``; returns probabilities per label (softmax over labels).

    ``images``: paths, PIL images or a preprocessed ``[B, 3, H, W]`` tensor. ``templates``: a set
    name (``"model-card"`` — the default, ``"paper"``), one template with ``{}``, or a list (an
    ensemble: the mean of the normalised prompt embeddings per label). ``tokenizer`` and
    ``preprocess`` default to the ones :func:`biomedclip.load` attached to the model.
    """
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    preprocess = preprocess or getattr(model, "preprocess", None)
    if tokenizer is None:
        raise InputError("no tokenizer: pass tokenizer= or load the model with biomedclip.load")
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    labels = parse_labels(labels)
    classifier = build_classifier(model, tokenizer, labels, templates)
    if preprocess is None and not isinstance(images, torch.Tensor):
        from biomedclip.transforms import eval_transform

        preprocess = eval_transform(model.config.preprocess)
    feats = encode_images(model, images, preprocess, batch_size)
    return classify_features(model, feats, classifier, labels)
