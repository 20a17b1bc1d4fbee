"""Torch-free tokenizer for the ONNX runner: ``tokenizer.json`` through the ``tokenizers`` package.

The same ids and masks as :class:`biomedclip.tokenizer.Tokenizer`: the text is cleaned the same way
(ftfy's mojibake repair when ``ftfy`` is installed, HTML unescaped twice, whitespace collapsed),
wrapped in ``[CLS] ... [SEP]``, truncated to the context length keeping ``[SEP]`` and padded to the
longest text of the batch. Returns NumPy ``int64`` arrays.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as RustTokenizer

from biomedclip.errors import TokenizerError

log = logging.getLogger(__name__)

try:  # optional at inference: only mojibake repair depends on it
    from ftfy import fix_text as _fix_text
except ImportError:  # pragma: no cover - exercised only where ftfy is absent
    _fix_text = None


def clean_text(text: str) -> str:
    """The reference's cleaning: fix mojibake (ftfy), unescape HTML twice, collapse whitespace."""
    if _fix_text is not None:
        text = _fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).strip()


class TextTokenizer:
    """Callable: ``tok(["a caption", ...]) -> (input_ids, attention_mask, truncated)``."""

    def __init__(self, path: str | Path, context_length: int = 256):
        path = Path(path)
        try:
            self._tok = RustTokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the rust library raises plain Exception
            raise TokenizerError(f"{path}: cannot read tokenizer ({e})") from e
        self._tok.no_padding()
        self._tok.no_truncation()
        vocab = self._tok.get_vocab()
        try:
            self.sep_id, self.pad_id = vocab["[SEP]"], vocab["[PAD]"]
        except KeyError as e:
            raise TokenizerError(f"{path}: vocabulary has no {e.args[0]} token") from e
        if context_length < 2:
            raise TokenizerError(f"context_length must be >= 2, got {context_length}")
        self.context_length = context_length
        if _fix_text is None:
            log.warning("ftfy is not installed: texts are not repaired for mojibake")

    def __call__(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise TokenizerError("no texts to tokenize")
        cleaned = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TokenizerError(f"text #{i} is {type(text).__name__}, not str")
            c = clean_text(text)
            if not c:
                raise TokenizerError(f"text #{i} ({text!r}) is empty after cleaning")
            cleaned.append(c)
        seqs = [e.ids for e in self._tok.encode_batch(cleaned, add_special_tokens=True)]
        n = self.context_length
        truncated = [len(s) > n for s in seqs]
        seqs = [s[: n - 1] + [self.sep_id] if t else s for s, t in zip(seqs, truncated)]
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = s
            mask[row, : len(s)] = 1
        return ids, mask, truncated
