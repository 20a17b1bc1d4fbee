"""``biomedclip.load``: one call from a source to a ready model, preprocess and tokenizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from biomedclip.checkpoint.hub import ResolvedSource, resolve_source
from biomedclip.checkpoint.info import LoadInfo
from biomedclip.config import DEFAULT_MODEL, ModelConfig
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer
from biomedclip.transforms import eval_transform

log = logging.getLogger(__name__)
Source = str | os.PathLike
__all__ = ["LoadInfo", "load", "load_model", "load_tokenizer", "resolve_dtype"]


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    try:
        return names[str(dtype).lower()]
    except KeyError as e:
        raise ValueError(f"unknown dtype {dtype!r} (use fp32, bf16 or fp16)") from e


def load_model(
    source: Source | ModelConfig = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    config: ModelConfig | None = None,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    endpoint: str | None = None,
    _resolved: ResolvedSource | None = None,
) -> BiomedCLIP:
    """Build the model and load weights from ``source`` (a :class:`ModelConfig` gives random init).

    ``dtype`` casts the weights (for memory); for fast inference keep fp32 weights and use
    :class:`~biomedclip.embedding.EncoderSettings` ``precision`` (autocast) instead.
    """
    if isinstance(source, ModelConfig):
        model = BiomedCLIP(source).eval()
    else:
        model = BiomedCLIP.from_pretrained(
            source, config, cache_dir, verify, endpoint, resolved=_resolved
        )
    return model.to(device=device, dtype=resolve_dtype(dtype))


def load_tokenizer(
    source: Source | None = None,
    context_length: int = 256,
    cache_dir: str | Path | None = None,
    _resolved: ResolvedSource | None = None,
) -> Tokenizer:
    """The tokenizer of ``source`` (its tokenizer files), else the released PubMedBERT one.

    A model directory or hub snapshot with ``tokenizer.json`` or ``vocab.txt`` gives its own;
    otherwise the released files bundled in the package are used (no network, no hub cache:
    ``HF_HUB_OFFLINE=1`` with an empty cache works).
    """
    tok_dir = _resolved.tokenizer_dir if _resolved else None
    if tok_dir is None and source is not None and Path(str(source)).is_dir():
        d = Path(str(source))
        if (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file():
            tok_dir = d
    if tok_dir is None:
        log.debug("%s: no tokenizer files; using the bundled PubMedBERT tokenizer", source)
        return Tokenizer.bundled(context_length=context_length)
    return Tokenizer.from_pretrained(tok_dir, context_length=context_length)


def load(
    source: Source | ModelConfig = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    config: ModelConfig | None = None,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    tokenizer: Tokenizer | str | os.PathLike | None = None,
    endpoint: str | None = None,
) -> tuple[BiomedCLIP, Callable[[Image.Image], torch.Tensor], Tokenizer]:
    """Load BiomedCLIP: ``model, preprocess, tokenizer = biomedclip.load()``.

    ``source``: ``hf-hub:org/repo`` (downloaded and cached; the cache works offline), a directory with
    ``open_clip_config.json`` + weights (+ tokenizer files), or a single weights file
    (``.safetensors``, ``.bin``, ``.pt``). A file presenting itself as the released checkpoint is
    verified against its sha256 (``verify=False`` opts out). ``tokenizer`` overrides where tokenizer
    files come from; ``endpoint`` overrides the hub URL (default: ``HF_ENDPOINT`` or huggingface.co).
    """
    resolved = (
        None
        if isinstance(source, ModelConfig)
        else resolve_source(source, cache_dir=cache_dir, endpoint=endpoint)
    )
    model = load_model(source, device, dtype, config, cache_dir, verify, _resolved=resolved)
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    elif tokenizer is not None:
        tok = Tokenizer.from_pretrained(tokenizer, model.config.text.context_length)
    else:
        tok = load_tokenizer(
            None if isinstance(source, ModelConfig) else source,
            model.config.text.context_length,
            cache_dir,
            _resolved=resolved,
        )
    preprocess = eval_transform(model.config.preprocess)
    model.tokenizer, model.preprocess = tok, preprocess  # declared fields: Encoder's defaults
    return model, preprocess, tok
