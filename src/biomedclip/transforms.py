"""Image preprocessing, numerically identical to open_clip's for this model.

Eval: shortest-side bicubic resize (antialiased) -> centre crop -> RGB conversion -> tensor ->
normalise with the OpenAI mean/std. The RGB conversion comes after resize and crop, as in the
reference, so palette and other modes go through exactly the same pixels.
Train: RandomResizedCrop(image_size, scale=(0.9, 1.0), bicubic) -> RGB -> tensor -> normalise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms as T

from biomedclip.config import PreprocessConfig


class ToRGB:
    """``PIL.Image.convert("RGB")``; tensors and arrays pass through."""

    def __call__(self, image):
        return image.convert("RGB") if isinstance(image, Image.Image) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _interpolation(name: str) -> T.InterpolationMode:
    try:
        return T.InterpolationMode(name)
    except ValueError as e:
        raise ValueError(f"unknown interpolation {name!r}") from e


def eval_transform(cfg: PreprocessConfig | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """The deterministic preprocessing used for inference: PIL image -> ``[3, S, S]`` tensor."""
    cfg = cfg or PreprocessConfig()
    return T.Compose(
        [
            T.Resize(
                cfg.image_size, interpolation=_interpolation(cfg.interpolation), antialias=True
            ),
            T.CenterCrop(cfg.image_size),
            ToRGB(),
            T.ToTensor(),
            T.Normalize(mean=cfg.mean, std=cfg.std),
        ]
    )


def train_transform(cfg: PreprocessConfig | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """Training augmentation of the reference: RandomResizedCrop(scale 0.9-1.0), bicubic."""
    cfg = cfg or PreprocessConfig()
    return T.Compose(
        [
            T.RandomResizedCrop(
                cfg.image_size,
                scale=tuple(cfg.train_scale),
                interpolation=_interpolation(cfg.interpolation),
            ),
            ToRGB(),
            T.ToTensor(),
            T.Normalize(mean=cfg.mean, std=cfg.std),
        ]
    )


def preprocess_batch(
    images: Sequence[Image.Image], transform: Callable[[Image.Image], torch.Tensor]
) -> torch.Tensor:
    """Stack transformed images into a ``[B, 3, S, S]`` batch."""
    return torch.stack([transform(im) for im in images])
