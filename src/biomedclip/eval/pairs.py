"""Image-caption pairs for retrieval evaluation: a ``PAIRS.csv`` or a MedICaT ``.jsonl`` file.

* CSV: a header with ``image`` and ``caption`` columns (``text`` is accepted for ``caption``, and an
  optional ``id``); image paths are relative to the CSV's folder unless absolute.
* MedICaT (Subramanian et al. 2020): one JSON object a line with ``pdf_hash`` and ``fig_uri``
  (the file ``<pdf_hash>_<fig_uri>`` in ``figures/`` beside the ``.jsonl``) and ``s2_caption`` (else ``s2orc_caption``); the id is
  ``pdf_hash/fig_key``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from biomedclip.errors import InputError


@dataclass(frozen=True)
class Pair:
    """One image and its caption."""

    id: str
    image: Path
    caption: str


def read_pairs(path: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> list[Pair]:
    """Pairs from a CSV (``.csv``/``.tsv``) or a MedICaT ``.jsonl`` (by extension)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: pairs file not found")
    if p.suffix.lower() in (".jsonl", ".json"):
        return read_medicat(p, figures_dir)
    return read_pairs_csv(p)


def read_pairs_csv(path: str | os.PathLike) -> list[Pair]:
    p = Path(path)
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        text_col = "caption" if "caption" in fields else "text" if "text" in fields else None
        if "image" not in fields or text_col is None:
            raise InputError(
                f"{p}: needs 'image' and 'caption' columns (found: {', '.join(fields) or 'none'})"
            )
        reader.fieldnames = fields
        pairs = []
        for line, row in enumerate(reader, start=2):
            image, caption = (row.get("image") or "").strip(), (row.get(text_col) or "").strip()
            if not image or not caption:
                raise InputError(f"{p}, line {line}: empty image or caption")
            pairs.append(Pair(row.get("id") or str(line - 2), _resolve(p.parent, image), caption))
    if not pairs:
        raise InputError(f"{p}: no pairs")
    return pairs


def read_medicat(
    path: str | os.PathLike, figures_dir: str | os.PathLike | None = None
) -> list[Pair]:
    p = Path(path)
    figures = Path(figures_dir) if figures_dir else p.parent / "figures"
    pairs = []
    with open(p, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                uri = rec["fig_uri"]
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{p}, line {line_no}: not a MedICaT record ({e})") from e
            caption = (rec.get("s2_caption") or rec.get("s2orc_caption") or "").strip()
            if not caption:
                raise InputError(f"{p}, line {line_no}: no caption")
            pdf_hash = rec.get("pdf_hash")
            rid = f"{pdf_hash or line_no}/{rec.get('fig_key', uri)}"
            pairs.append(Pair(rid, _medicat_image(figures, pdf_hash, uri), caption))
    if not pairs:
        raise InputError(f"{p}: no pairs")
    return pairs


def _medicat_image(figures: Path, pdf_hash: str | None, uri: str) -> Path:
    """MedICaT names figure files ``<pdf_hash>_<fig_uri>``; plain ``<fig_uri>`` is accepted too."""
    if pdf_hash:
        prefixed = figures / f"{pdf_hash}_{uri}"
        if prefixed.exists() or not (figures / uri).exists():
            return prefixed
    return figures / uri


def _resolve(base: Path, image: str) -> Path:
    q = Path(image).expanduser()
    return q if q.is_absolute() else base / q
