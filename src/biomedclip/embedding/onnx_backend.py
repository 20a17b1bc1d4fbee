"""CPU fast path for the image tower: ONNX Runtime with int8 dynamic-quantised weights.

The image tower (``model.encode_image``, before normalisation) goes through the project's one ONNX
export path (:mod:`biomedclip.model.onnx_graphs`: fp32 graph, then int8 dynamic quantisation with
its fp32 exceptions) once, and the result is cached under ``cache_dir`` keyed by a digest of the
tower's weights, so later jobs with the same weights start at once (see benchmarks/image_speed.py
for the figures). Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch

from biomedclip.onnx.runner import make_session

log = logging.getLogger(__name__)
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (fingerprint, enc)
FORMAT = "int8-v2"  # bump when the export or quantisation recipe changes


def default_cache_dir() -> Path:
    base = os.environ.get("BIOMEDCLIP_CACHE") or Path.home() / ".cache" / "biomedclip"
    return Path(base) / "onnx"


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of ``module``'s parameters and buffers (names, shapes, dtypes and values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def quantized_image_tower(model: torch.nn.Module, cache_dir: str | Path | None = None) -> Path:
    """The cached int8 ONNX file of ``model``'s image tower, exported on first use."""
    from biomedclip.model.onnx_graphs import export_image_tower, quantize_int8, tower_depth

    model = model.float().cpu() if next(model.parameters()).device.type != "cpu" else model
    digest = weights_digest(model.visual)
    out = Path(cache_dir or default_cache_dir()) / f"image-{digest}-{FORMAT}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting the image tower to ONNX int8 (once per model): %s", out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = export_image_tower(model, Path(tmp) / "fp32.onnx")
        q = quantize_int8(fp32, Path(tmp) / "int8.onnx", "image", tower_depth(model, "image"))
        with open(q, "rb") as f:
            os.fsync(f.fileno())
        os.replace(q, out)  # atomic: concurrent jobs see the whole file or none
    return out


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Changes when a parameter is replaced or updated in place (cheap, unlike the digest)."""
    return tuple((p.data_ptr(), p._version) for p in model.visual.parameters())


def image_encoder_for(model: torch.nn.Module, cache_dir: str | Path | None = None):
    """An :class:`OnnxImageEncoder` for ``model``, reused while its weights are unchanged."""
    key = (_fingerprint(model), str(cache_dir or default_cache_dir()))
    hit = _SESSIONS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    enc = OnnxImageEncoder(model, cache_dir)
    _SESSIONS[model] = (key, enc)
    return enc


class OnnxImageEncoder:
    """Callable ``pixels [B,3,S,S] -> features [B,D]`` (float32 tensor) through ONNX Runtime."""

    def __init__(
        self,
        model: torch.nn.Module,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ):
        self.path = quantized_image_tower(model, cache_dir)
        self.session = make_session(self.path, threads or torch.get_num_threads())

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(pixels.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {"pixels": x})[0])
