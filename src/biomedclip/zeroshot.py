"""Zero-shot classification: label prompts -> class embeddings -> softmax over labels."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from biomedclip.embedding.batching import Failure
from biomedclip.embedding.encoded import Encoded
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.inputs import as_list
from biomedclip.errors import ImageError
from biomedclip.imaging.options import ReadOptions

# re-exported: labels and templates live in biomedclip.prompts and stay importable from here
from biomedclip.prompts import MODEL_CARD_TEMPLATES as MODEL_CARD_TEMPLATES
from biomedclip.prompts import PAPER_TEMPLATES as PAPER_TEMPLATES
from biomedclip.prompts import TEMPLATE_SETS as TEMPLATE_SETS
from biomedclip.prompts import parse_labels as parse_labels
from biomedclip.prompts import resolve_templates as resolve_templates

if TYPE_CHECKING:
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer

ImageInput = str | Path | bytes | Image.Image


def build_classifier(
    model: BiomedCLIP,
    tokenizer: Tokenizer | None,
    labels: Sequence[str],
    templates: str | Sequence[str] | None = None,
    settings: EncoderSettings | None = None,
) -> torch.Tensor:
    """Unit-norm class embeddings ``[C, D]``: per label, the mean of its normalised prompt embeddings."""
    return Encoder(model, tokenizer=tokenizer, settings=settings).classifier(labels, templates)


@dataclass
class ZeroShotResult:
    """Probabilities ``[N, C]`` over ``labels``, one row per classified image.

    ``inputs[r]`` says which input row ``r`` belongs to (``{"input": name, "index": i}``, plus
    ``"part"`` for a frame / slice of a multi-image input). A whole slide gives one row, the mean
    probability over its tissue tiles, and ``inputs[r]["slide"]`` holds the tiles' details
    (``tiles``, ``probs`` per tile ``[T, C]``, ``coords``). ``failures``: inputs that could not be
    read (the others are classified).
    """

    labels: list[str]
    probs: torch.Tensor
    logits: torch.Tensor
    inputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def top_k(self, k: int = 5) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.labels))
        vals, idx = self.probs.topk(k, dim=-1)
        return [
            [(self.labels[j], float(v)) for v, j in zip(row_v.tolist(), row_i.tolist())]
            for row_v, row_i in zip(vals, idx)
        ]

    def to_dicts(self) -> list[dict[str, float]]:
        return [dict(zip(self.labels, row.tolist())) for row in self.probs]


def classify_features(
    model: BiomedCLIP | float,
    image_features: torch.Tensor,
    classifier: torch.Tensor,
    labels: list[str],
) -> ZeroShotResult:
    """Softmax over labels of ``exp(logit_scale) * cos(image, class)`` (``model`` or the scale)."""
    scale = model if isinstance(model, float) else float(model.logit_scale.detach().float().exp())
    feats = F.normalize(torch.as_tensor(image_features).float(), dim=-1)
    logits = scale * feats @ classifier.float().to(feats.device).T
    return ZeroShotResult(list(labels), logits.softmax(dim=-1).cpu(), logits.cpu())


def _input_name(image: Any, i: int) -> str:
    if isinstance(image, (str, Path, os.PathLike)):
        return os.fspath(image)
    return f"<image #{i}>"


def classify_encoded(
    encoded: Encoded,
    classifier: torch.Tensor,
    labels: list[str],
    logit_scale: float,
    names: Sequence[str],
) -> ZeroShotResult:
    """Per-row probabilities of encoded images; the tiles of a whole slide become one row (mean
    probability over tiles), frames and slices stay one row each."""
    labels = list(labels)
    if not len(encoded):
        empty = torch.zeros(0, len(labels))
        return ZeroShotResult(labels, empty, empty, [], encoded.failures)
    per_row = classify_features(
        logit_scale, torch.from_numpy(encoded.embeddings), classifier, labels
    )
    probs, logits, inputs = [], [], []
    rows = np.arange(len(encoded))
    for pos in dict.fromkeys(encoded.input_index.tolist()):
        sel = rows[encoded.input_index == pos]
        parts = [encoded.parts[r] for r in sel]
        if any(p.get("tile") for p in parts):  # a whole slide: mean over its tiles
            probs.append(per_row.probs[sel].mean(dim=0))
            logits.append(per_row.logits[sel].mean(dim=0))
            slide = {
                **parts[0].get("slide", {}),
                "tiles": len(sel),
                "probs": per_row.probs[sel],
                "coords": [{k: p[k] for k in ("x", "y", "level") if k in p} for p in parts],
            }
            inputs.append({"input": names[pos], "index": pos, "slide": slide})
            continue
        for r in sel:
            probs.append(per_row.probs[r])
            logits.append(per_row.logits[r])
            entry = {"input": names[pos], "index": pos}
            if encoded.parts[r]:
                entry["part"] = dict(encoded.parts[r])
                entry["describe"] = encoded.describe(int(r))
            inputs.append(entry)
    return ZeroShotResult(labels, torch.stack(probs), torch.stack(logits), inputs, encoded.failures)


def top_tiles(result: ZeroShotResult, row: int, n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` tiles of the slide in ``row`` that score highest for the slide's top label, with
    their level-0 coordinates and each tile's own top label."""
    slide = result.inputs[row].get("slide")
    if not slide or n <= 0:
        return []
    best = int(result.probs[row].argmax())
    probs = slide["probs"]
    order = probs[:, best].argsort(descending=True)[:n].tolist()
    return [
        {
            **slide["coords"][i],
            "label": result.labels[best],
            "prob": float(probs[i, best]),
            "tile_top_label": result.labels[int(probs[i].argmax())],
        }
        for i in order
    ]


def zero_shot(
    model: BiomedCLIP,
    images: Sequence[ImageInput] | torch.Tensor | ImageInput,
    labels: str | Sequence[str],
    templates: str | Sequence[str] | None = None,
    tokenizer: Tokenizer | None = None,
    preprocess=None,
    batch_size: int = 32,
    settings: EncoderSettings | None = None,
    read: ReadOptions | None = None,
) -> ZeroShotResult:
    """Classify images among ``labels``; returns probabilities per label (softmax over labels).

    ``images``: paths (any format the imaging reader knows: JPEG/PNG/TIFF, DICOM, NIfTI, whole
    slides), raw file bytes, PIL images, or a preprocessed ``[B, 3, H, W]`` tensor. A whole slide
    is cut into tissue tiles and classified by the mean probability over tiles (as ``biomedclip
    classify`` does); ``read`` sets the window, frames, slices and tiling. ``templates``: a set
    name (``"model-card"`` — the default, ``"paper"``), one template with ``{}``, or a list (an
    ensemble: the mean of the normalised prompt embeddings per label). ``settings`` choose
    precision/backend (default fp32, exact). ``tokenizer`` and ``preprocess`` default to the ones
    :func:`biomedclip.load` gave the model. Unreadable inputs are listed in ``failures``.
    """
    settings = settings or EncoderSettings(batch_size=batch_size)
    if read is not None:
        settings = dataclasses.replace(settings, read=read)
    encoder = Encoder(model, preprocess, tokenizer, settings)
    labels = parse_labels(labels)
    classifier = encoder.classifier(labels, templates)
    if isinstance(images, torch.Tensor):
        feats = encoder.encode_pixels(images)
        return classify_features(encoder.logit_scale, feats, classifier, labels)
    images = as_list(images)
    encoded = encoder.encode_images(images)
    if not len(encoded) and encoded.failures:
        first = encoded.failures[0].error
        if len(images) == 1:
            raise ImageError(first)
        raise ImageError(f"none of the {len(images)} images could be read (first: {first})")
    names = [_input_name(im, i) for i, im in enumerate(images)]
    return classify_encoded(encoded, classifier, labels, encoder.logit_scale, names)
