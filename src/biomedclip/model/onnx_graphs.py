"""The one ONNX export path: both towers as fp32 graphs, and their int8 dynamic quantisation.

Used by ``biomedclip export onnx`` (:mod:`biomedclip.export.to_onnx`) and by the ``onnx-int8`` image
backend of the encoding engine (:mod:`biomedclip.embedding.onnx_backend`); it lives beside the model
it traces, below both, so the engine does not import the export package (whose parity check runs
through the engine). ``biomedclip.export.onnx_graphs`` re-exports it.

The image graph maps ``pixels [B, 3, S, S]`` to ``features [B, D]`` (dynamic batch); the text graph
maps ``input_ids``/``attention_mask`` ``[B, L]`` (int64) to ``features [B, D]`` with a dynamic
batch *and* sequence length, so short prompts stay cheap. Features are not normalised.

The text graph runs BERT's embeddings and encoder with an additive ``[B, 1, 1, L]`` mask built in
the graph: tracing ``BertModel.forward`` itself would freeze transformers' mask logic to the example
shapes. int8 quantisation (``onnxruntime.quantization.quantize_dynamic``: MatMul weights per output
channel, activations per batch at run time) leaves the layers that moved embeddings most in fp32.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from biomedclip.errors import ConfigError

OPSET = 17
# node-name fragments left in fp32 by the int8 recipe. Image: the patch embedding, the projection
# head and the first and last blocks; measured on the full ViT-B/16 over 64 real images (min cosine
# to fp32): all int8 0.99897; fp32 ends only 0.99897; + first six fc2 0.99906; + blocks 0 and 11
# 0.99955. Text: the projection MLP and the first and last layers (see docs/export.md).
IMAGE_KEEP_FP32 = ("patch_embed", "head")
TEXT_KEEP_FP32 = ("/proj/",)


class ImageGraph(nn.Module):
    """``model.encode_image`` (unnormalised) as a traceable module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.visual = model.visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


class TextGraph(nn.Module):
    """``model.encode_text`` (unnormalised) with the attention mask built inside the graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text = model.text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bert = self.text.transformer
        hidden = bert.embeddings(input_ids=input_ids)
        keep = attention_mask[:, None, None, :].to(hidden.dtype)
        additive = (1.0 - keep) * torch.finfo(hidden.dtype).min
        hidden = bert.encoder(hidden, attention_mask=additive).last_hidden_state
        if self.text.pooler == "cls_pooler":
            pooled = bert.pooler(hidden)
        else:
            pooled = hidden[:, 0]
        return self.text.proj(pooled)


def _export(module: nn.Module, args: tuple, path: Path, names: dict[str, dict[int, str]]) -> None:
    inputs = [n for n in names if n != "features"]
    modes = [(m, m.training) for m in module.modules()]  # restored after the export
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=["features"],
            dynamic_axes=names,
            opset_version=OPSET,
            dynamo=False,
        )
    for m, training in modes:
        m.training = training


def _cpu_fp32(model: nn.Module) -> nn.Module:
    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        raise ConfigError(
            f"ONNX export needs an fp32 model on the CPU (got {p.dtype} on {p.device})"
        )
    return model


def export_image_tower(model: nn.Module, path: str | Path) -> Path:
    """The image tower as an fp32 ONNX graph with a dynamic batch axis."""
    size = int(model.config.vision.image_size)
    example = torch.zeros(2, 3, size, size)
    names = {"pixels": {0: "batch"}, "features": {0: "batch"}}
    _export(ImageGraph(_cpu_fp32(model)), (example,), Path(path), names)
    return Path(path)


def export_text_tower(model: nn.Module, path: str | Path) -> Path:
    """The text tower as an fp32 ONNX graph with dynamic batch and sequence axes."""
    ids = torch.tensor([[2, 1000, 1001, 1002, 3], [2, 1000, 3, 0, 0]], dtype=torch.long)
    ids = ids.clamp(max=model.config.text.bert.vocab_size - 1)
    mask = (torch.arange(5)[None] < torch.tensor([[5], [3]])).long()
    names = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "features": {0: "batch"},
    }
    _export(TextGraph(_cpu_fp32(model)), (ids, mask), Path(path), names)
    return Path(path)


def int8_keep_fp32(node_names: Sequence[str], tower: str, depth: int) -> list[str]:
    """The nodes the int8 recipe leaves in fp32: the tower's fragments + its first/last blocks."""
    if tower == "image":
        frags = (*IMAGE_KEEP_FP32, "blocks.0/", f"blocks.{depth - 1}/")
    else:
        frags = (*TEXT_KEEP_FP32, "layer.0/", f"layer.{depth - 1}/")
    return [n for n in node_names if any(f in n for f in frags)]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, tower: str, depth: int) -> Path:
    """Dynamic int8 quantisation of an exported tower (``tower`` is ``image`` or ``text``)."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ConfigError(
            "ONNX int8 export needs onnx and onnxruntime: pip install 'biomedclip[onnx]'"
        ) from e
    nodes = onnx.load(str(fp32_path), load_external_data=False).graph.node
    keep = int8_keep_fp32([n.name for n in nodes], tower, depth)
    root = logging.getLogger()
    quiet = _DropPreprocessingAdvice()
    root.addFilter(quiet)  # onnxruntime logs advice meant for static quantisation
    try:
        quantize_dynamic(
            str(fp32_path),
            str(out_path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=keep,
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        root.removeFilter(quiet)
    return Path(out_path)


class _DropPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def tower_depth(model: nn.Module, tower: str) -> int:
    """Number of transformer blocks of the image or text tower."""
    if tower == "image":
        return len(model.visual.trunk.blocks)
    return len(model.text.transformer.encoder.layer)
