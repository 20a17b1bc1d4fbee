"""The ONNX graphs of the towers: moved to :mod:`biomedclip.model.onnx_graphs` (below both the
exports and the encoding engine's ``onnx-int8`` backend); this import path keeps working."""

from biomedclip.model.onnx_graphs import (
    IMAGE_KEEP_FP32,
    OPSET,
    TEXT_KEEP_FP32,
    ImageGraph,
    TextGraph,
    export_image_tower,
    export_text_tower,
    int8_keep_fp32,
    quantize_int8,
    tower_depth,
)

__all__ = [
    "IMAGE_KEEP_FP32",
    "OPSET",
    "TEXT_KEEP_FP32",
    "ImageGraph",
    "TextGraph",
    "export_image_tower",
    "export_text_tower",
    "int8_keep_fp32",
    "quantize_int8",
    "tower_depth",
]
