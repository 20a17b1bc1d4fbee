"""BiomedCLIP's image processor for transformers: the exact eval transform of the released model.

Shortest side resized to ``size`` (Pillow bicubic), centre crop, RGB, ``/ 255``, normalised with
``image_mean``/``image_std``: bit-identical to open_clip's and the ``biomedclip`` package's
torchvision transform (the steps live in ``preprocessing_biomedclip.py``, NumPy and Pillow only).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .preprocessing_biomedclip import OPENAI_MEAN, OPENAI_STD, preprocess_image


def _to_pil(image) -> Image.Image:
    """A PIL image from a PIL image, an ``HxW[xC]`` uint8 array or a ``CxHxW`` tensor/array."""
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first -> last
    if array.dtype != np.uint8:
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)


class BiomedCLIPImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        resample: str = "bicubic",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = int(size["shortest_edge"] if isinstance(size, dict) else size)
        self.image_mean = list(image_mean or OPENAI_MEAN)
        self.image_std = list(image_std or OPENAI_STD)
        self.resample = resample

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        """One image or a list (PIL, arrays or tensors) -> ``pixel_values [B, 3, S, S]``."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixels = np.stack(
            [
                preprocess_image(
                    _to_pil(im), self.size, self.image_mean, self.image_std, self.resample
                )
                for im in images
            ]
        )
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)
