"""Running the towers at a chosen precision: fp32 (exact) or the bf16/fp16 fast paths.

``fp32`` is bit-for-bit the model's own forward pass. ``bf16`` runs under autocast (matmuls and
attention in bfloat16, norms and softmax in fp32) on CPUs with native bf16 and on GPUs; ``fp16``
is the same on CUDA. ``backend="onnx-int8"`` runs the image tower through ONNX Runtime with int8
dynamic-quantised weights (CPU; see :mod:`.onnx_backend`); texts then still use ``precision``.
Embeddings always come back as L2-normalised float32 numpy arrays.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from biomedclip.errors import ConfigError

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnx-int8")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX (where bf16 autocast is faster than fp32)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


@dataclass
class EncoderSettings:
    precision: str = "fp32"
    compile: bool = False
    backend: str = "torch"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: use one of {', '.join(BACKENDS)}")

    @property
    def label(self) -> str:
        """What the manifest records: runs with different labels must not share a dataset."""
        return self.precision if self.backend == "torch" else f"{self.backend}+{self.precision}"


class Encoder:
    """Wraps a loaded fp32 model: ``encode_images(pixels)``, ``encode_texts(ids, mask)``."""

    def __init__(self, model: torch.nn.Module, settings: EncoderSettings | None = None):
        self.settings = settings or EncoderSettings()
        self.model = model.eval()
        self.device = next(model.parameters()).device
        p = self.settings.precision
        if p == "fp16" and self.device.type != "cuda":
            raise ConfigError("fp16 is for CUDA devices; on CPU use bf16")
        if p == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "this CPU has no native bf16: bf16 autocast will likely be slower than fp32"
            )
        if p != "fp32" and next(model.parameters()).dtype != torch.float32:
            raise ConfigError("load the model in fp32; the fast path uses autocast")
        self._image_fn = model.encode_image
        self._text_fn = model.encode_text
        if self.settings.compile:
            self._image_fn = torch.compile(model.encode_image, dynamic=False)
            self._text_fn = torch.compile(model.encode_text, dynamic=True)
        self._image_autocast = True
        if self.settings.backend == "onnx-int8":
            if self.device.type != "cpu":
                raise ConfigError("the onnx-int8 backend runs on CPU; on GPUs use bf16/fp16")
            from biomedclip.embedding.onnx_backend import image_encoder_for

            self._image_fn = image_encoder_for(model)
            self._image_autocast = False

    def _autocast(self):
        p = self.settings.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode_images_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True)
        with self._autocast() if self._image_autocast else contextlib.nullcontext():
            feats = self._image_fn(pixels)
        return F.normalize(feats.float(), dim=-1)

    @torch.inference_mode()
    def encode_texts_tensor(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        input_ids = input_ids.to(self.device, non_blocking=True)
        attention_mask = attention_mask.to(self.device, non_blocking=True)
        with self._autocast():
            feats = self._text_fn(input_ids, attention_mask)
        return F.normalize(feats.float(), dim=-1)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        return self.encode_images_tensor(pixels).cpu().numpy()

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        return self.encode_texts_tensor(input_ids, attention_mask).cpu().numpy()
