"""CPU fast path for the image tower: ONNX Runtime with int8 dynamic-quantised weights.

The image tower (``model.encode_image``, before normalisation) is exported once with
``torch.onnx.export``, its MatMul/Conv weights are quantised to int8 per output channel by
``onnxruntime.quantization.quantize_dynamic`` (activations are quantised per batch at run time),
and the result is cached under ``cache_dir`` keyed by a digest of the tower's weights, so later
jobs with the same weights start at once. Layers listed in ``KEEP_FP32`` stay in fp32: they are
the ones whose quantisation moved embeddings most (see benchmarks/image_speed.py for the figures).
Needs the ``onnx`` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from biomedclip.errors import ConfigError

log = logging.getLogger(__name__)
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (fingerprint, enc)
FORMAT = "int8-v2"  # bump when the export or quantisation recipe changes
# node-name fragments left in fp32: the patch embedding, the projection head, and the first and
# last transformer blocks. Measured on the full ViT-B/16 over 64 real images (min cosine to fp32):
# all int8 0.99897; fp32 ends only 0.99897; + first six fc2 0.99906; + blocks 0 and 11 0.99955.
KEEP_FP32 = ("patch_embed", "head")  # plus the first and last blocks, see fp32_nodes()


def fp32_nodes(names: list[str], depth: int) -> list[str]:
    """The graph nodes left unquantised: ``KEEP_FP32`` and the first and last blocks."""
    frags = (*KEEP_FP32, "blocks.0/", f"blocks.{depth - 1}/")
    return [n for n in names if any(f in n for f in frags)]


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


class _ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


def export_image_tower(model: torch.nn.Module, path: Path, image_size: int) -> None:
    """``model.encode_image`` as an fp32 ONNX graph with a dynamic batch axis."""
    example = torch.zeros(2, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ImageTower(model).eval(),
            (example,),
            str(path),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def quantized_image_tower(model: torch.nn.Module, cache_dir: str | Path | None = None) -> Path:
    """The cached int8 ONNX file of ``model``'s image tower, exported on first use."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ConfigError(
            "the onnx-int8 backend needs onnx and onnxruntime: pip install onnxruntime onnx"
        ) from e
    model = model.float().cpu() if next(model.parameters()).device.type != "cpu" else model
    size = int(model.config.vision.image_size)
    digest = weights_digest(model.visual)
    out = Path(cache_dir or default_cache_dir()) / f"image-{digest}-{FORMAT}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting the image tower to ONNX int8 (once per model): %s", out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_image_tower(model, fp32, size)
        nodes = onnx.load(str(fp32), load_external_data=False).graph.node
        keep = fp32_nodes([n.name for n in nodes], len(model.visual.trunk.blocks))
        q = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            str(fp32),
            str(q),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=keep,
            extra_options={"MatMulConstBOnly": True},
        )
        with open(q, "rb") as f:
            os.fsync(f.fileno())
        os.replace(q, out)  # atomic: concurrent jobs see the whole file or none
    return out


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Changes when a parameter is replaced or updated in place (cheap, unlike the digest)."""
    return tuple((p.data_ptr(), p._version) for p in model.visual.parameters())


def image_encoder_for(model: torch.nn.Module, cache_dir: str | Path | None = None):
    """An :class:`OnnxImageEncoder` for ``model``, reused while its weights are unchanged."""
    key = (_fingerprint(model), str(cache_dir))
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
        import onnxruntime as ort

        self.path = quantized_image_tower(model, cache_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(
            str(self.path), opts, providers=["CPUExecutionProvider"]
        )

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(pixels.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {"pixels": x})[0])
