"""``biomedclip.load``: one call from a source to a ready model, preprocess and tokenizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from biomedclip.checkpoint.hub import ResolvedSource, resolve_source
from biomedclip.checkpoint.integrity import claims_released, sha256_file, verify_sha256
from biomedclip.checkpoint.state_dict import load_into, read_state_dict
from biomedclip.config import DEFAULT_MODEL, ModelConfig
from biomedclip.errors import TokenizerError
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer
from biomedclip.transforms import eval_transform

log = logging.getLogger(__name__)
Source = str | os.PathLike


@dataclass
class LoadInfo:
    """Where a loaded model came from (``biomedclip info``; model identity for indexes)."""

    source: str
    weights: str | None
    config: str | None
    tokenizer_dir: str | None
    verified_release: bool = False
    _sha256: str | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str | None:
        """sha256 of the weights file, computed on first use (memoised on disk per file)."""
        if self._sha256 is None and self.weights:
            self._sha256 = sha256_file(self.weights)
        return self._sha256


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
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
    """Build the model and load weights from ``source`` (a :class:`ModelConfig` gives random init)."""
    if isinstance(source, ModelConfig):
        model = BiomedCLIP(source)
        model.load_info = LoadInfo("random init", None, None, None)
    else:
        res = _resolved or resolve_source(source, cache_dir=cache_dir, endpoint=endpoint)
        cfg = config or (
            ModelConfig.from_file(res.config) if res.config else ModelConfig.biomedclip()
        )
        digest, verified = None, False
        if verify and res.weights is not None and claims_released(res.weights, res.repo_id):
            digest, verified = verify_sha256(res.weights), True
        state = read_state_dict(res.weights)
        with torch.device("meta"):
            model = BiomedCLIP(cfg)  # no wasted random init: weights come from the file
        model.to_empty(device="cpu")
        load_into(model, state, res.weights)
        _fix_non_persistent_buffers(model)
        model.load_info = LoadInfo(
            str(source),
            str(res.weights),
            str(res.config) if res.config else None,
            str(res.tokenizer_dir) if res.tokenizer_dir else None,
            verified_release=verified,
            _sha256=digest,
        )
    model.eval()
    return model.to(device=device, dtype=_resolve_dtype(dtype))


def _fix_non_persistent_buffers(model: BiomedCLIP) -> None:
    """Re-create buffers that are not in the state dict after a meta-device build."""
    emb = model.text.transformer.embeddings
    for name in ("position_ids", "token_type_ids"):
        buf = getattr(emb, name, None)
        if buf is None:
            continue
        n = buf.shape[-1]
        value = (
            torch.arange(n).expand((1, -1))
            if name == "position_ids"
            else torch.zeros((1, n), dtype=torch.long)
        )
        emb.register_buffer(name, value.clone(), persistent=False)


def load_tokenizer(
    source: Source | None = None,
    context_length: int = 256,
    cache_dir: str | Path | None = None,
    _resolved: ResolvedSource | None = None,
) -> Tokenizer:
    """The tokenizer of ``source`` (its tokenizer files), else the released one from the hub cache."""
    tok_dir = _resolved.tokenizer_dir if _resolved else None
    if tok_dir is None and source is not None and Path(str(source)).is_dir():
        d = Path(str(source))
        if (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file():
            tok_dir = d
    if tok_dir is None:
        try:
            tok_dir = resolve_source(
                DEFAULT_MODEL, cache_dir=cache_dir, need_weights=False
            ).tokenizer_dir
        except Exception as e:  # noqa: BLE001 - report as a tokenizer problem
            raise TokenizerError(
                f"{source}: no tokenizer files (tokenizer.json or vocab.txt) and the released "
                f"tokenizer could not be fetched ({e})"
            ) from e
        if tok_dir is None:
            raise TokenizerError(f"{source}: no tokenizer files found")
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
    model.tokenizer, model.preprocess = tok, preprocess  # defaults for zero_shot & co.
    return model, preprocess, tok
