"""Torch-free inference on an ONNX export (``biomedclip export onnx MODEL DIR``) or an OpenVINO
export (``biomedclip export openvino``: variants ``openvino-fp32`` / ``-int8`` / ``-bf16``).

Needs only onnxruntime (or openvino), NumPy, Pillow and tokenizers (ftfy optional); nothing here
imports torch::

    from biomedclip.onnx import OnnxBiomedCLIP
    m = OnnxBiomedCLIP("biomedclip-onnx", variant="int8")
    probs, enc = m.classify(["xray.jpg"], ["chest X-ray", "brain MRI"])
"""

from biomedclip.onnx.preprocess import preprocess_batch, preprocess_image
from biomedclip.onnx.runner import (
    CONFIG_FILE,
    VARIANTS,
    Embeddings,
    OnnxBiomedCLIP,
    OnnxConfig,
    make_session,
)
from biomedclip.onnx.text import TextTokenizer, clean_text

__all__ = [
    "CONFIG_FILE",
    "VARIANTS",
    "Embeddings",
    "OnnxBiomedCLIP",
    "OnnxConfig",
    "TextTokenizer",
    "clean_text",
    "make_session",
    "preprocess_batch",
    "preprocess_image",
]
