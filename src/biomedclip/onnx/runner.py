"""Run an ONNX export without torch: ``OnnxBiomedCLIP(dir).encode_images(...)`` / ``.encode_texts(...)``.

Needs onnxruntime, NumPy, Pillow and tokenizers (ftfy optional); nothing in this package imports
torch. Images are read with :func:`biomedclip.imaging.load_image` (torch-free; DICOM, NIfTI and
slides need their optional readers) and preprocessed by :mod:`biomedclip.onnx.preprocess`, the
eval transform in NumPy. Embeddings are unit-norm float32. A bad input is reported in
``Embeddings.errors`` and the rest of the batch is still encoded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.errors import BiomedCLIPError, ConfigError, InputError, ModelNotFoundError
from biomedclip.onnx.preprocess import preprocess_batch
from biomedclip.onnx.text import TextTokenizer

CONFIG_FILE = "biomedclip_onnx.json"
VARIANTS = {
    "fp32": ("image.onnx", "text.onnx"),
    "int8": ("image.int8.onnx", "text.int8.onnx"),
    # `export openvino`: OpenVINO IR; bf16 is the fp32 IR run with OpenVINO's bf16 hint
    "openvino-fp32": ("image.xml", "text.xml"),
    "openvino-int8": ("image.int8.xml", "text.int8.xml"),
    "openvino-bf16": ("image.xml", "text.xml"),
}
MODEL_CARD_TEMPLATE = "this is a photo of {}"


@dataclass
class OnnxConfig:
    """What the runner needs besides the graphs (written by ``biomedclip export onnx``)."""

    image_size: int
    mean: list[float]
    std: list[float]
    interpolation: str
    context_length: int
    embed_dim: int
    logit_scale: float  # exp(model.logit_scale)
    variants: list[str] = field(default_factory=lambda: ["fp32"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: str | Path) -> OnnxConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as e:
            raise ModelNotFoundError(f"{directory}: not an ONNX export (no {CONFIG_FILE})") from e
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: cannot read ONNX export config ({e})") from e


@dataclass
class Embeddings:
    """Unit-norm ``embeddings [n_ok, D]``; ``index`` maps rows to input positions; ``errors``
    lists ``(position, message)`` of the inputs that could not be encoded."""

    embeddings: np.ndarray
    index: np.ndarray
    errors: list[tuple[int, str]]


def make_session(path: str | Path, threads: int | None = None, variant: str = "fp32"):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (an OpenVINO
    session with the same ``run`` call for the ``openvino-*`` variants' ``.xml`` files)."""
    if str(path).endswith(".xml"):
        from biomedclip.onnx.openvino_session import OpenVINOSession

        return OpenVINOSession(path, threads, "bf16" if variant == "openvino-bf16" else "f32")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError("the ONNX runner needs onnxruntime: pip install onnxruntime") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _result(chunks: list[np.ndarray], index: list[int], dim: int, errors) -> Embeddings:
    emb = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return Embeddings(emb.astype(np.float32), np.asarray(index, np.int64), errors)


class OnnxBiomedCLIP:
    """Both towers of an export: ONNX ``fp32`` (exact) or ``int8`` (faster), or OpenVINO
    ``openvino-fp32`` / ``openvino-int8`` / ``openvino-bf16`` (``biomedclip export openvino``)."""

    def __init__(self, directory: str | Path, variant: str = "fp32", threads: int | None = None):
        self.directory = Path(directory)
        self.config = OnnxConfig.read(self.directory)
        if variant not in VARIANTS or variant not in self.config.variants:
            raise ConfigError(
                f"{self.directory}: no {variant!r} variant (exported: {self.config.variants})"
            )
        self.variant = variant
        image_file, text_file = VARIANTS[variant]
        self.image_session = make_session(self.directory / image_file, threads, variant)
        self.text_session = make_session(self.directory / text_file, threads, variant)
        self.tokenizer = TextTokenizer(
            self.directory / "tokenizer.json", self.config.context_length
        )

    @property
    def logit_scale(self) -> float:
        return self.config.logit_scale

    # ---- raw graphs -------------------------------------------------------------------------
    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed ``float32 [B, 3, S, S]`` -> unnormalised features ``[B, D]``."""
        return self.image_session.run(None, {"pixels": np.ascontiguousarray(pixels, np.float32)})[0]

    def text_features(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``int64 [B, L]`` ids and mask -> unnormalised features ``[B, D]``."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.text_session.run(None, feeds)[0]

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        c = self.config
        return preprocess_batch(
            images, size=c.image_size, mean=c.mean, std=c.std, resample=c.interpolation
        )

    # ---- inputs -> unit-norm embeddings ------------------------------------------------------
    def encode_images(self, images: Sequence[Any], batch_size: int = 16) -> Embeddings:
        """Paths, bytes or PIL images -> unit-norm embeddings (unreadable inputs in ``errors``)."""
        from biomedclip.imaging import load_image

        chunks, index, errors, pending = [], [], [], []

        def flush() -> None:
            if pending:
                pixels = self.preprocess([im for _, im in pending])
                chunks.append(_unit(self.image_features(pixels)))
                index.extend(i for i, _ in pending)
                pending.clear()

        for i, item in enumerate(images):
            try:
                image = item if isinstance(item, Image.Image) else load_image(item, mode=None)
                pending.append((i, image))
            except (BiomedCLIPError, OSError, ValueError) as e:
                errors.append((i, str(e)))
            if len(pending) >= batch_size:
                flush()
        flush()
        return _result(chunks, index, self.config.embed_dim, errors)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> Embeddings:
        """Texts -> unit-norm embeddings; batches of similar length (empty texts in ``errors``)."""
        errors, ok = [], []
        for i, text in enumerate(texts):
            try:
                ok.append((i, self.tokenizer([text])[0].shape[1]))
            except BiomedCLIPError as e:
                errors.append((i, str(e)))
        ok.sort(key=lambda t: t[1])  # length buckets: little padding per batch
        chunks, index = [], []
        for start in range(0, len(ok), batch_size):
            rows = [i for i, _ in ok[start : start + batch_size]]
            ids, mask, _ = self.tokenizer([texts[i] for i in rows])
            chunks.append(_unit(self.text_features(ids, mask)))
            index.extend(rows)
        result = _result(chunks, index, self.config.embed_dim, errors)
        order = np.argsort(result.index, kind="stable")  # back to input order
        return Embeddings(result.embeddings[order], result.index[order], errors)

    def classifier(self, labels: Sequence[str], templates: Sequence[str] = (MODEL_CARD_TEMPLATE,)):
        """Zero-shot weights ``[C, D]``: per label the renormalised mean of its prompt embeddings."""
        if not labels:
            raise InputError("no labels given")
        from biomedclip.prompts import build_prompts  # the template grammar, lengths first

        prompts = build_prompts(labels, templates)
        enc = self.encode_texts(prompts)
        if enc.errors:
            raise InputError(f"prompt {prompts[enc.errors[0][0]]!r}: {enc.errors[0][1]}")
        emb = enc.embeddings.reshape(len(labels), len(prompts) // len(labels), -1).mean(axis=1)
        return _unit(emb)

    def classify(
        self,
        images: Sequence[Any],
        labels: Sequence[str],
        templates: Sequence[str] = (MODEL_CARD_TEMPLATE,),
    ) -> tuple[np.ndarray, Embeddings]:
        """Softmax probabilities ``[n_ok, C]`` over ``labels`` and the image embeddings."""
        weights = self.classifier(labels, templates)
        enc = self.encode_images(images)
        logits = self.logit_scale * enc.embeddings @ weights.T
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True), enc
