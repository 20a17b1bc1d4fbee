"""The one encoding engine: every image and text that goes through the model for inference does so
through an :class:`Encoder` (zero-shot, classify, embed, search, evaluation, the service).

Precision means the same everywhere: ``fp32`` is bit-for-bit the model's own forward pass;
``bf16`` / ``fp16`` run under autocast (weights stay fp32; matmuls and attention in half precision,
norms and softmax in fp32) — bf16 on CPUs with native bf16 and on GPUs, fp16 on CUDA.
``backend="onnx-int8"`` runs the image tower through ONNX Runtime with int8 dynamic-quantised
weights (CPU; see :mod:`.onnx_backend`); texts then still use ``precision``. ``backend="openvino"``
runs both towers through OpenVINO at ``precision`` ``fp32``, ``bf16`` (native-bf16 CPUs) or
``int8`` (NNCF, calibrated on ``calibration``; see :mod:`.openvino_backend`). ``backend="auto"``
measures the candidates once per model and CPU and runs the fastest within cosine 0.999 of fp32
(:mod:`.backend_auto`); :meth:`Encoder.provenance` says what ran. Embeddings always come back
L2-normalised in float32.

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
PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: --backend openvino only
BACKENDS = ("torch", "onnx-int8", "openvino", "auto")
DEFAULT_MAX_TILES = 256  # whole slides: tissue tiles sampled per slide
# fast_decode keeps both sides of a drafted JPEG at least this many times the model's input size,
# so the exact resize still antialiases: on 500 real scans the worst cosine to the exact path was
# 0.9996 at 2x and 0.990 at 1x (benchmarks/end_to_end.py)
FAST_DECODE_FACTOR = 2


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX (where bf16 autocast is faster than fp32)."""
    from biomedclip.embedding import cpu_features

    return cpu_features.native_bf16()


def _env_calibration() -> bool:
    from biomedclip.embedding.calibration import ENV

    return bool(os.environ.get(ENV))


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
    ``calibration``: real images (a folder, or a list of paths) that OpenVINO int8 and
    ``backend="auto"`` calibrate and measure on the first time (see :mod:`.calibration`).
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
    calibration: Any = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.precision == "int8" and self.backend != "openvino":
            raise ConfigError("precision int8 is for --backend openvino (or use onnx-int8 / auto)")
        if self.batch_size < 1 or self.text_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")

    @property
    def needs_calibration(self) -> bool:
        """Whether a first build may need real calibration images (OpenVINO int8, auto)."""
        return self.backend == "auto" or (self.backend == "openvino" and self.precision == "int8")

    @property
    def label(self) -> str:
        """What a manifest records: runs with different labels must not share a dataset."""
        if self.backend == "auto":
            label = "auto"
        elif self.backend == "torch":
            label = self.precision
        else:
            label = f"{self.backend}+{self.precision}"
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
        self.auto: dict | None = None
        self._ov = None
        if self.settings.backend == "auto":
            self._resolve_auto()
        p = self.settings.precision
        if self.settings.backend == "openvino":
            self._setup_openvino()
            self._auto_text()
            return
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
        self._image_autocast = self._text_autocast = True
        if self.settings.backend == "onnx-int8":
            if self.device.type != "cpu":
                raise ConfigError("the onnx-int8 backend runs on CPU; on GPUs use bf16/fp16")
            from biomedclip.embedding.onnx_backend import image_encoder_for

            self._image_fn = image_encoder_for(model)
            self._image_autocast = False
        self._auto_text()

    def _auto_text(self) -> None:
        """Under ``auto``: texts through OpenVINO where it measured fastest for them."""
        text = (self.auto or {}).get("text")
        s = self.settings
        if not text or (text["backend"], text["precision"]) == (s.backend, s.precision):
            return
        from biomedclip.embedding.openvino_backend import openvino_towers_for

        cal = self._calibration() if text["precision"] == "int8" else None
        ov = openvino_towers_for(
            self.model, self.preprocess, self.tokenizer, text["precision"], cal
        )
        self._text_fn, self._text_autocast = ov.text, False
        self._text_label = f"openvino+{text['precision']}"

    def _calibration(self):
        from biomedclip.embedding.calibration import resolve_calibration

        return resolve_calibration(self.settings.calibration)

    def _resolve_auto(self) -> None:
        """Replace ``backend="auto"`` by the measured (or cached) choice for this CPU."""
        from biomedclip.embedding.backend_auto import choose

        s = self.settings
        cal = self._calibration() if s.calibration is not None or _env_calibration() else None
        self.auto = choose(self.model, self.preprocess, self.tokenizer, s, cal)
        self.settings = replace(s, backend=self.auto["backend"], precision=self.auto["precision"])

    def _setup_openvino(self) -> None:
        from biomedclip.embedding.openvino_backend import openvino_towers_for

        if self.device.type != "cpu":
            raise ConfigError("the openvino backend runs on CPU; on GPUs use bf16/fp16")
        cal = self._calibration() if self.settings.needs_calibration else None
        self._ov = openvino_towers_for(
            self.model, self.preprocess, self.tokenizer, self.settings.precision, cal
        )
        self._image_fn, self._text_fn = self._ov.image, self._ov.text
        self._image_autocast = self._text_autocast = False

    # ---- provenance ----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """The precision label a manifest records (``auto:`` + the choice under ``auto``)."""
        label = self.settings.label
        if getattr(self, "_text_label", None):
            label += f",text={self._text_label}"
        return f"auto:{label}" if getattr(self, "auto", None) is not None else label

    def provenance(self) -> dict:
        """What ran: backend, precision, how it was chosen (``auto``: its measured min cosine and
        the candidates), the CPU record, and OpenVINO's cache and conversion figures."""
        from biomedclip.embedding import cpu_features

        s, auto, ov = self.settings, getattr(self, "auto", None), getattr(self, "_ov", None)
        out: dict = {
            "backend": s.backend,
            "precision": s.precision,
            "label": self.label,
            "chosen_by": "auto" if auto is not None else "user",
            "device": str(getattr(self, "device", "cpu")),
            "cpu": cpu_features.cpu_record(),
        }
        if auto is not None:
            out["auto"] = {k: v for k, v in auto.items() if k != "cpu"}
            out["min_cosine"] = auto.get("min_cosine")
        if ov is not None:
            out["openvino"] = dict(ov.info)
        return out

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
        """The autocast context of ``precision`` (a no-op for fp32 and OpenVINO's int8)."""
        p = self.settings.precision
        if p in ("fp32", "int8"):
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
        ctx = self.autocast() if self._text_autocast else contextlib.nullcontext()
        with ctx:
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
