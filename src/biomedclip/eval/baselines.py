"""Other CLIP-family models through the same evaluation harness (baselines beside BiomedCLIP).

Model specs (``--model`` / ``eval reproduce --models a,b,c``):

* ``open_clip:ARCH`` - an open_clip architecture with *random* weights (``open_clip.list_models()``);
  ``open_clip:ARCH@TAG`` with the pretrained tag or weights file ``TAG``;
  ``open_clip:hf-hub:org/repo`` a hub model; ``open_clip:/a/dir`` a local directory with
  ``open_clip_config.json`` and weights (open_clip's ``local-dir:`` schema).
* ``hf:/a/dir`` or ``hf:org/repo`` - a transformers ``CLIPModel`` or ``SiglipModel`` checkpoint
  (chosen by ``config.json``'s ``model_type``), with its own image processor and tokenizer
  (SigLIP: text padded to the maximum length, as it was trained; no attention mask).

Each model keeps its own preprocessing and tokenizer; features are L2-normalised; zero-shot
uses its own ``logit_scale`` (and ``logit_bias`` for sigmoid-loss models). open_clip and
transformers are imported only when such a spec is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.errors import InputError

PREFIXES = ("open_clip:", "hf:")


def is_baseline(spec: str) -> bool:
    return str(spec).startswith(PREFIXES)


@dataclass
class _Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class _Tokenize:
    """``tok(texts, warn=False) -> batch`` over an open_clip or transformers tokenizer."""

    def __init__(self, fn, kind: str, pad_id: int = 0):
        self.fn, self.kind, self.pad_id = fn, kind, pad_id

    def __call__(self, texts: Sequence[str], warn: bool = False) -> _Batch:
        if self.kind == "open_clip":
            ids = self.fn(list(texts))
            return _Batch(ids, (ids != self.pad_id).long())
        enc = self.fn(list(texts))
        ids = enc["input_ids"]
        mask = enc.get("attention_mask")
        return _Batch(ids, mask if mask is not None else torch.ones_like(ids))


class _HFImages:
    """PIL image -> ``[3, H, W]`` through a transformers image processor (stable repr: cache key)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"HFImageProcessor({self.processor.to_json_string()})"


class BaselineEncoder(Encoder):
    """An :class:`Encoder` over a foreign CLIP-family model (same engine, cache and metrics)."""

    @property
    def label(self) -> str:
        """The baseline's name (``open_clip:ARCH``, a hub id ...), which reports show."""
        return self._label

    def __init__(self, model, preprocess, tokenizer, image_fn, text_fn, logit_scale: float,
                 logit_bias: float | None, settings: EncoderSettings | None, label: str):  # fmt: skip
        self.settings = settings or EncoderSettings()
        if self.settings.backend != "torch" or self.settings.compile:
            raise InputError(f"{label}: baselines run with --backend torch, without --compile")
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.progress = False
        self.read = self.settings.read
        self.device = next(model.parameters()).device
        self._image_fn = image_fn
        self._text_fn = text_fn
        self._image_autocast = self._text_autocast = True
        self._scale = float(logit_scale)
        self.logit_bias = None if logit_bias is None else float(logit_bias)
        self._label = label
        if not hasattr(model, "dtype"):
            model.dtype = next(model.parameters()).dtype
        with torch.inference_mode():
            b = tokenizer(["a"])
            self._dim = int(text_fn(b.input_ids.to(self.device), b.attention_mask.to(self.device))
                            .shape[-1])  # fmt: skip

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def logit_scale(self) -> float:
        return self._scale


def _features(out) -> torch.Tensor:
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _open_clip(spec: str, device: str, cache_dir: str | None, settings) -> BaselineEncoder:
    try:
        import open_clip
    except ImportError as e:
        raise InputError(
            f"open_clip:{spec}: open_clip baselines need open_clip_torch "
            "(pip install 'biomedclip[eval,baselines]')"
        ) from e

    name, pretrained = spec, None
    if not name.startswith(("hf-hub:", "local-dir:")) and "@" in name:
        name, pretrained = name.split("@", 1)
    from pathlib import Path

    if Path(name).is_dir():
        name = f"local-dir:{name}"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, cache_dir=cache_dir
        )
        tok = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except (RuntimeError, ValueError, OSError) as e:
        raise InputError(f"open_clip:{spec}: cannot load ({e})") from e
    bias = getattr(model, "logit_bias", None)
    return BaselineEncoder(
        model, preprocess, _Tokenize(tok, "open_clip"),
        lambda px: model.encode_image(px), lambda ids, mask: model.encode_text(ids),
        float(model.logit_scale.detach().exp()),
        None if bias is None else float(bias.detach()), settings, f"open_clip:{spec}",
    )  # fmt: skip


def _transformers(spec: str, device: str, cache_dir: str | None, settings) -> BaselineEncoder:
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(spec, cache_dir=cache_dir)
    except (OSError, ValueError) as e:
        raise InputError(f"hf:{spec}: not a transformers checkpoint ({e})") from e
    kind = cfg.model_type
    if kind == "clip":
        from transformers import CLIPModel as cls
    elif kind == "siglip":
        from transformers import SiglipModel as cls
    else:
        raise InputError(f"hf:{spec}: model_type {kind!r}; expected clip or siglip")
    model = cls.from_pretrained(spec, cache_dir=cache_dir).to(device)
    images = AutoImageProcessor.from_pretrained(spec, cache_dir=cache_dir)
    tok = AutoTokenizer.from_pretrained(spec, cache_dir=cache_dir)
    if kind == "siglip":
        n = int(getattr(cfg.text_config, "max_position_embeddings", 64))

        def tokenize(texts):
            enc = tok(texts, padding="max_length", max_length=n, truncation=True,
                      return_tensors="pt")  # fmt: skip
            return {"input_ids": enc["input_ids"]}

        def text_fn(ids, mask):
            return _features(model.get_text_features(input_ids=ids))
    else:
        n = int(getattr(cfg.text_config, "max_position_embeddings", 77))

        def tokenize(texts):
            return tok(texts, padding=True, max_length=n, truncation=True, return_tensors="pt")

        def text_fn(ids, mask):
            return _features(model.get_text_features(input_ids=ids, attention_mask=mask))

    bias = getattr(model, "logit_bias", None)
    return BaselineEncoder(
        model, _HFImages(images), _Tokenize(tokenize, "hf"),
        lambda px: _features(model.get_image_features(pixel_values=px)), text_fn,
        float(model.logit_scale.detach().exp()),
        None if bias is None else float(bias.detach().reshape(-1)[0]), settings, f"hf:{spec}",
    )  # fmt: skip


def load_baseline(
    spec: str, device: str = "cpu", cache_dir: str | None = None,
    settings: EncoderSettings | None = None,
) -> BaselineEncoder:  # fmt: skip
    """The :class:`BaselineEncoder` of a ``open_clip:...`` or ``hf:...`` spec."""
    if spec.startswith("open_clip:"):
        return _open_clip(spec[len("open_clip:") :], device, cache_dir, settings)
    if spec.startswith("hf:"):
        return _transformers(spec[len("hf:") :], device, cache_dir, settings)
    raise InputError(f"{spec}: baseline specs start with open_clip: or hf:")
