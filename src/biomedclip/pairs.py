"""Image-caption pairs for retrieval evaluation: a ``PAIRS.csv`` or a MedICaT ``.jsonl`` file.

* CSV/TSV/Parquet: read by :func:`biomedclip.tables.read_table` (an image path column such as
  ``image`` or ``path``, a caption column such as ``caption`` or ``text``, an optional ``id``);
  image paths are relative to the table's folder unless absolute.
* MedICaT (Subramanian et al. 2020): one JSON object a line with ``pdf_hash`` and ``fig_uri``
  (the file ``<pdf_hash>_<fig_uri>`` in ``figures/`` beside the ``.jsonl``; a plain ``<fig_uri>``
  is accepted too) and ``s2_caption`` (else ``s2orc_caption``); the id is ``pdf_hash/fig_key``.
  :func:`iter_medicat` is the one MedICaT reader (the PMC pipeline's ``medicat`` import uses it).

It sits beside :mod:`biomedclip.tables` (core, no extras), below both the PMC pipeline and the
evaluation package, so ``pmc`` does not depend on ``eval``; ``biomedclip.eval.pairs`` re-exports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.tables import read_table


@dataclass(frozen=True)
class Pair:
    """One image and its caption."""

    id: str
    image: Path
    caption: str


def read_pairs(path: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> list[Pair]:
    """Pairs from a table (``.csv``/``.tsv``/``.parquet``) or a MedICaT ``.jsonl`` (by extension)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: pairs file not found")
    if p.suffix.lower() in (".jsonl", ".json"):
        return read_medicat(p, figures_dir)
    return read_pairs_csv(p)


def read_pairs_csv(path: str | os.PathLike) -> list[Pair]:
    t = read_table(path)
    if t.path_column is None or t.caption_column is None:
        raise InputError(
            f"{t.source}: needs image path and caption columns, e.g. 'image' and 'caption' "
            f"(found: {', '.join(t.columns) or 'none'})"
        )
    pairs = []
    for row in t.rows:
        caption = (row.text or "").strip()
        if not row.path or not caption:
            raise InputError(f"{t.source}, line {row.index + 2}: empty image or caption")
        pairs.append(Pair(row.id or str(row.index), Path(row.path), caption))
    if not pairs:
        raise InputError(f"{t.source}: no pairs")
    return pairs


@dataclass(frozen=True)
class MedicatRecord:
    """One MedICaT figure: its paper (``pdf_hash``), image file and caption (may be empty)."""

    line: int
    paper: str | None  # pdf_hash
    fig_uri: str
    fig_key: str
    image: Path
    caption: str  # whitespace-normalised
    doi: str
    radiology: bool | None
    predicted_type: str

    @property
    def id(self) -> str:
        return f"{self.paper or self.line}/{self.fig_key or self.fig_uri}"


def iter_medicat(
    path: str | os.PathLike, figures_dir: str | os.PathLike | None = None
) -> Iterator[MedicatRecord]:
    """The figures of a MedICaT JSONL file (``figures_dir`` defaults to ``figures/`` beside it);
    a malformed line raises an :class:`InputError` naming ``file:line``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: MedICaT JSONL not found")
    figures = Path(figures_dir) if figures_dir else p.parent / "figures"
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                uri = rec["fig_uri"]
                paper = rec.get("pdf_hash")
                caption = rec.get("s2_caption") or rec.get("s2orc_caption") or ""
                doi = (rec.get("oa_info") or {}).get("doi") or ""
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise InputError(f"{p}:{n}: not a MedICaT record ({e!r})") from e
            yield MedicatRecord(
                line=n,
                paper=paper,
                fig_uri=uri,
                fig_key=rec.get("fig_key") or "",
                image=_medicat_image(figures, paper, uri),
                caption=" ".join(str(caption).split()),
                doi=doi,
                radiology=rec.get("radiology"),
                predicted_type=rec.get("predicted_type") or "",
            )


def read_medicat(
    path: str | os.PathLike, figures_dir: str | os.PathLike | None = None
) -> list[Pair]:
    """MedICaT figures as evaluation pairs; a figure without a caption is an error."""
    pairs = []
    for rec in iter_medicat(path, figures_dir):
        if not rec.caption:
            raise InputError(f"{path}:{rec.line}: no caption")
        pairs.append(Pair(rec.id, rec.image, rec.caption))
    if not pairs:
        raise InputError(f"{path}: no pairs")
    return pairs


def _medicat_image(figures: Path, pdf_hash: str | None, uri: str) -> Path:
    """MedICaT names figure files ``<pdf_hash>_<fig_uri>``; plain ``<fig_uri>`` is accepted too."""
    if pdf_hash:
        prefixed = figures / f"{pdf_hash}_{uri}"
        if prefixed.exists() or not (figures / uri).exists():
            return prefixed
    return figures / uri
