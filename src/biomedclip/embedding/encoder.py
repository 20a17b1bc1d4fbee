"""The one encoding engine: every image and text that goes through the model for inference does so
through an :class:`Encoder` (zero-shot, classify, embed, search, evaluation, the service).

Precision means the same everywhere: ``fp32`` is bit-for-bit the model's own forward pass;
``bf16`` / ``fp16`` run under autocast (weights stay fp32; matmuls and attention in half precision,
norms and softmax in fp32) — bf16 on CPUs with native bf16 and on GPUs, fp16 on CUDA.
``backend="onnx-int8"`` runs the image tower through ONNX Runtime with int8 dynamic-quantised
weights (CPU; see :mod:`.onnx_backend`); texts then still use ``precision``. Embeddings always come
back L2-normalised in float32.

Low level: :meth:`Encoder.encode_pixels` / :meth:`Encoder.encode_tokens` (tensors in, tensors out).
High level: :meth:`Encoder.encode_images` / :meth:`Encoder.encode_texts` (paths, PIL images, bytes
or strings in, :class:`~biomedclip.embedding.encoded.Encoded` out) run the same local engine as
``biomedclip embed`` (:func:`biomedclip.embedding.engine.run_local`): decoding through the imaging
reader with :class:`~biomedclip.imaging.ReadOptions`, length-bucketed text batches, one bad input
reported without losing the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from biomedclip.errors import ConfigError, InputError
from biomedclip.imaging.options import ReadOptions

if TYPE_CHECKING:
    from biomedclip.embedding.encoded import Encoded
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnx-int8")
DEFAULT_MAX_TILES = 256  # whole slides: tissue tiles sampled per slide
# fast_decode keeps both sides of a drafted JPEG at least this many times the model's input size,
# so the exact resize still antialiases: on 500 real scans the worst cosine to the exact path was
# 0.9996 at 2x and 0.990 at 1x (benchmarks/end_to_end.py)
FAST_DECODE_FACTOR = 2


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


def default_read_options() -> ReadOptions:
    """8-bit images as stored (the reference's preprocessing converts after resize and crop);
    whole slides as up to :data:`DEFAULT_MAX_TILES` tissue tiles."""
    return ReadOptions(mode=None, max_tiles=DEFAULT_MAX_TILES)


@dataclass
class EncoderSettings:
    """How the model runs (see ``--precision``, ``--backend``, ``--batch-size`` in the CLI).

    ``num_workers``: image-decoding processes (``None``: one per core beyond the model's, at most
    8; none on 2 cores or fewer). ``read``: how files become images (DICOM window, frames, NIfTI
    slices, whole-slide tiling, pixel limit). ``token_budget``: at most this many padded tokens per
    text batch. ``fast_decode``: JPEGs are decoded at a reduced DCT scale that keeps both sides at
    least twice the model's input size, then resized exactly (see ``ReadOptions.draft``): faster
    for large JPEGs, embeddings close to (cosine >= 0.999) but not equal to the exact path.
    """

    precision: str = "fp32"
    compile: bool = False
    backend: str = "torch"
    batch_size: int = 64
    text_batch_size: int = 256
    token_budget: int | None = None
    num_workers: int | None = None
    read: ReadOptions = field(default_factory=default_read_options)
    fast_decode: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.batch_size < 1 or self.text_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")

    @property
    def label(self) -> str:
        """What a manifest records: runs with different labels must not share a dataset."""
        label = self.precision if self.backend == "torch" else f"{self.backend}+{self.precision}"
        return label + "+fast-decode" if self.fast_decode else label

    @property
    def max_pixels(self) -> int | None:
        return self.read.max_pixels

    def workers(self) -> int:
        """Decoding processes: one per core beyond the model's, at most 8. On 2 cores or fewer
        decoding stays in the main process: a worker would preempt the model's threads."""
        if self.num_workers is not None:
            return max(0, self.num_workers)
        cores = os.cpu_count() or 1
        return 0 if cores <= 2 else min(8, cores - 1)

    def encoder_settings(self) -> EncoderSettings:
        """The plain :class:`EncoderSettings` part (a subclass adds job options)."""
        return EncoderSettings(**{f.name: getattr(self, f.name) for f in fields(EncoderSettings)})


class Encoder:
    """A loaded model with its preprocess, tokenizer and settings: the only way to encode.

    ``preprocess`` and ``tokenizer`` default to the ones :func:`biomedclip.load` gave the model
    (``model.preprocess`` / ``model.tokenizer``); the preprocess falls back to the model's eval
    transform. The model must be in fp32 for ``bf16``/``fp16`` (autocast).
    """

    def __init__(
        self,
        model: BiomedCLIP,
        preprocess: Callable | None = None,
        tokenizer: Tokenizer | None = None,
        settings: EncoderSettings | None = None,
        progress: bool = False,
    ):
        if isinstance(preprocess, EncoderSettings) or isinstance(tokenizer, EncoderSettings):
            raise TypeError(
                "pass EncoderSettings as settings=... (the second argument is preprocess)"
            )
        self.settings = settings or EncoderSettings()
        self.model = model.eval()
        self.preprocess = preprocess or getattr(model, "preprocess", None)
        if self.preprocess is None:
            from biomedclip.transforms import eval_transform

            self.preprocess = eval_transform(model.config.preprocess)
        self.tokenizer = tokenizer or getattr(model, "tokenizer", None)
        self.progress = progress
        self.read = self.settings.read
        if self.settings.fast_decode and self.read.draft is None:
            size = int(model.config.preprocess.image_size)
            self.read = replace(self.read, draft=FAST_DECODE_FACTOR * size)
        self.device = next(model.parameters()).device
        p = self.settings.precision
        if p == "fp16" and self.device.type != "cuda":
            raise ConfigError("fp16 is for CUDA devices; on CPU use bf16")
        if p == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "this CPU has no native bf16: bf16 autocast will likely be slower than fp32"
            )
        if p != "fp32" and next(model.parameters()).dtype != torch.float32:
            raise ConfigError("load the model in fp32; --precision bf16/fp16 uses autocast")
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

    # ---- identity --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model.config.embed_dim)

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)``: the temperature of image-text logits."""
        return float(self.model.logit_scale.detach().float().exp())

    # ---- low level: tensors -------------------------------------------------------------------------
    def autocast(self):
        """The autocast context of ``precision`` (a no-op for fp32)."""
        p = self.settings.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings ``[B, D]`` (float32, on the model's device) of preprocessed
        ``[B, 3, H, W]`` pixels, in forward passes of at most ``batch_size`` images."""
        step = self.settings.batch_size
        out = []
        for start in range(0, len(pixels), step):
            chunk = pixels[start : start + step].to(self.device, non_blocking=True)
            if self.model.dtype != torch.float32 and self._image_autocast:
                chunk = chunk.to(self.model.dtype)  # a model cast by load(dtype=...)
            ctx = self.autocast() if self._image_autocast else contextlib.nullcontext()
            with ctx:
                feats = self._image_fn(chunk)
            out.append(F.normalize(feats.float(), dim=-1))
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(out)

    @torch.no_grad()  # not inference_mode: training (VQA on cached features) reuses the tokens
    def encode_pixel_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image tokens ``[B, 1 + n_patches, width]`` (float32; after the ViT's final norm, [CLS]
        first) of preprocessed pixels at ``precision``: the input of fusion models (VQA)."""
        step, out = self.settings.batch_size, []
        for start in range(0, len(pixels), step):
            chunk = pixels[start : start + step].to(self.device, non_blocking=True)
            with self.autocast():
                _, tokens = self.model.encode_image(chunk, return_tokens=True)
            out.append(tokens.float())
        return torch.cat(out) if out else torch.zeros(0)

    @torch.inference_mode()
    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit text embeddings ``[B, D]`` (float32) of one token batch."""
        input_ids = input_ids.to(self.device, non_blocking=True)
        attention_mask = attention_mask.to(self.device, non_blocking=True)
        with self.autocast():
            feats = self._text_fn(input_ids, attention_mask)
        return F.normalize(feats.float(), dim=-1)

    # ---- high level: inputs -------------------------------------------------------------------------
    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise InputError("no tokenizer: pass tokenizer= or load the model with biomedclip.load")
        return self.tokenizer

    def encode_images(
        self, images: Sequence[str | os.PathLike | bytes | Any], ids: Sequence[str] | None = None
    ) -> Encoded:
        """Embed image inputs (paths, raw file bytes or PIL images), in order.

        Multi-image inputs (DICOM frames, NIfTI slices, whole-slide tiles, as ``settings.read``
        says) give one row per image; unreadable inputs are in ``failures``.
        """
        from biomedclip.embedding.inputs import image_items

        return self.encode_source(image_items(images, ids), "image")

    def encode_texts(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> Encoded:
        """Embed texts in order, in length-bucketed batches; empty texts are in ``failures``."""
        from biomedclip.embedding.inputs import text_items

        self._require_tokenizer()
        return self.encode_source(text_items(texts, ids), "text")

    def encode_source(self, source, modality: str) -> Encoded:
        """Embed one modality of an :class:`~biomedclip.embedding.sources.Source` in memory."""
        from biomedclip.embedding.encoded import EncodedSink
        from biomedclip.embedding.engine import run_local

        if modality == "text":
            self._require_tokenizer()
        sink = EncodedSink(source, self.dim)
        stats = run_local(self, source, modality, sink, progress=self.progress)
        return sink.result(modality, stats.truncated_texts)

    @torch.inference_mode()
    def classifier(
        self, labels: str | Sequence[str], templates: str | Sequence[str] | None = None
    ) -> torch.Tensor:
        """Zero-shot class weights ``[C, D]``: per label, the mean of its normalised prompt
        embeddings, renormalised (a template-set name, one template with ``{}``, or a list)."""
        from biomedclip.prompts import parse_labels, resolve_templates

        labels = parse_labels(labels)
        temps = resolve_templates(templates)
        prompts = [t.format(label) for label in labels for t in temps]
        batch = self._require_tokenizer()(prompts, warn=False)
        emb = self.encode_tokens(batch.input_ids, batch.attention_mask)
        emb = emb.reshape(len(labels), len(temps), -1).mean(dim=1)
        return F.normalize(emb, dim=-1)
