"""PubMedBERT WordPiece tokenizer with the reference's text cleaning.

Token ids equal open_clip's ``HFTokenizer`` output (before its padding to 256): the text is cleaned
(ftfy, HTML unescape, whitespace collapse), lowercased and WordPiece-tokenised by the Rust
``tokenizers`` library, wrapped in ``[CLS] ... [SEP]`` and truncated to the context length keeping
``[SEP]``. Unlike the reference, a batch is padded only to its longest text and carries the attention
mask, which makes short prompts an order of magnitude cheaper to encode.

The released PubMedBERT WordPiece files (``vocab.txt``, ``tokenizer.json``; MIT, shipped with the
model) are bundled in the package (``biomedclip/assets/pubmedbert``, sha256 in
:data:`BUNDLED_SHA256`): :meth:`Tokenizer.bundled` needs neither the network nor a hub cache, and
:func:`biomedclip.load_tokenizer` uses it whenever a model directory or hub snapshot has none.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ftfy
import torch
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from biomedclip.errors import TokenizerError

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
BUNDLED_DIR = Path(__file__).resolve().parent / "assets" / "pubmedbert"
# sha256 of the released files (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224); the
# tests compare the bundled copies with them
BUNDLED_SHA256 = {
    "tokenizer.json": "defc1f91456606e7847af3a2fb4a8abb96441423aa5407a52498395ea68327ff",
    "vocab.txt": "7b36651908a88bc38bda41b728b2a598191e0d3b553cbacf7b1e5f026d5b5b9f",
}
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def clean_text(text: str) -> str:
    """The reference's cleaning: fix mojibake, unescape HTML twice, collapse whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).strip()


@dataclass
class TokenBatch:
    """Token ids ``[B, L]`` padded to the longest text, the attention mask, and true lengths."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: list[int]
    truncated: list[bool]

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.lengths, self.truncated
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class Tokenizer:
    """Callable: ``tokenizer(["a caption", ...]) -> TokenBatch``."""

    def __init__(self, backend: RustTokenizer, context_length: int = 256):
        backend.no_padding()
        backend.no_truncation()
        self._tok = backend
        self.context_length = context_length
        vocab = backend.get_vocab()
        try:
            self.cls_id = vocab["[CLS]"]
            self.sep_id = vocab["[SEP]"]
            self.pad_id = vocab["[PAD]"]
        except KeyError as e:
            raise TokenizerError(f"vocabulary has no {e.args[0]} token") from e

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_vocab(cls, vocab: str | Path | Sequence[str], context_length: int = 256) -> Tokenizer:
        """Build an uncased BERT WordPiece tokenizer from ``vocab.txt`` or a token list."""
        if isinstance(vocab, (str, Path)):
            path = Path(vocab)
            if not path.is_file():
                raise TokenizerError(f"{path}: vocabulary file not found")
            tokens = path.read_text(encoding="utf-8").splitlines()
        else:
            tokens = list(vocab)
        table = {t: i for i, t in enumerate(tokens)}
        for special in SPECIAL_TOKENS.values():
            if special not in table:
                raise TokenizerError(f"vocabulary has no {special} token")
        backend = RustTokenizer(WordPiece(table, unk_token="[UNK]", max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", table["[CLS]"]), ("[SEP]", table["[SEP]"])],
        )
        from tokenizers import decoders

        backend.decoder = decoders.WordPiece(prefix="##")
        for special in SPECIAL_TOKENS.values():
            backend.add_special_tokens([special])
        return cls(backend, context_length)

    @classmethod
    def from_pretrained(cls, directory: str | Path, context_length: int = 256) -> Tokenizer:
        """Load ``tokenizer.json`` (preferred) or ``vocab.txt`` from a model directory."""
        directory = Path(directory)
        tj, vocab = directory / "tokenizer.json", directory / "vocab.txt"
        if tj.is_file():
            try:
                return cls(RustTokenizer.from_file(str(tj)), context_length)
            except Exception as e:  # noqa: BLE001 - the rust library raises plain Exception
                raise TokenizerError(f"{tj}: cannot read tokenizer ({e})") from e
        if vocab.is_file():
            return cls.from_vocab(vocab, context_length)
        raise TokenizerError(
            f"{directory}: no tokenizer files (expected tokenizer.json or vocab.txt)"
        )

    @classmethod
    def bundled(cls, context_length: int = 256) -> Tokenizer:
        """The released PubMedBERT tokenizer from the files bundled in the package (offline)."""
        if not (BUNDLED_DIR / "tokenizer.json").is_file():
            raise TokenizerError(
                f"{BUNDLED_DIR}: the bundled tokenizer files are missing (a broken install?)"
            )
        return cls.from_pretrained(BUNDLED_DIR, context_length)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write tokenizer.json, vocab.txt and the HF config files (loadable by transformers)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / "tokenizer.json"))
        vocab = sorted(self._tok.get_vocab().items(), key=lambda kv: kv[1])
        (directory / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "do_basic_tokenize": True,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "model_max_length": self.context_length,
            **SPECIAL_TOKENS,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (directory / "special_tokens_map.json").write_text(
            json.dumps(SPECIAL_TOKENS, indent=2) + "\n"
        )

    # ---- use -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, texts: str | Sequence[str], allow_empty: bool = False) -> list[list[int]]:
        """Untruncated token ids (with ``[CLS]``/``[SEP]``) of each cleaned text."""
        if isinstance(texts, str):
            texts = [texts]
        cleaned = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TokenizerError(f"text #{i} is {type(text).__name__}, not str")
            c = clean_text(text)
            if not c and not allow_empty:
                raise TokenizerError(f"text #{i} ({text!r}) is empty after cleaning")
            cleaned.append(c)
        return [e.ids for e in self._tok.encode_batch(cleaned, add_special_tokens=True)]

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Number of tokens of each text including ``[CLS]``/``[SEP]``, before truncation."""
        return [len(ids) for ids in self.encode(texts, allow_empty=True)]

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        padding: str = "longest",
        allow_empty: bool = False,
        warn: bool = True,
    ) -> TokenBatch:
        """Tokenise, truncate to the context length keeping ``[SEP]``, pad (``longest``/``max_length``)."""
        length = context_length or self.context_length
        if length < 2:
            raise TokenizerError(f"context_length must be >= 2, got {length}")
        all_ids = self.encode(texts, allow_empty=allow_empty)
        if not all_ids:
            raise TokenizerError("no texts to tokenize")
        truncated = [len(ids) > length for ids in all_ids]
        all_ids = [
            ids[: length - 1] + [self.sep_id] if t else ids for ids, t in zip(all_ids, truncated)
        ]
        if warn and any(truncated):
            n = sum(truncated)
            warnings.warn(
                f"{n} text(s) longer than {length} tokens were truncated "
                f"(first: #{truncated.index(True)})",
                stacklevel=2,
            )
        ids, mask = self.pad(all_ids, length if padding == "max_length" else None)
        return TokenBatch(ids, mask, [len(s) for s in all_ids], truncated)

    def pad(
        self, rows: Sequence[Sequence[int]], width: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token id rows -> ids ``[B, width]`` padded with ``[PAD]`` and the attention mask
        (``width`` defaults to the longest row)."""
        width = width or max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, seq in enumerate(rows):
            ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)
