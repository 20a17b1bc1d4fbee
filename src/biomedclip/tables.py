"""The one reader of image-caption tables (CSV, TSV, Parquet), shared by embedding sources,
retrieval-evaluation pairs and training data, with one column convention (:func:`read_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from biomedclip.errors import InputError

PATH_COLUMNS = ("path", "image", "image_path", "filepath", "file", "filename")
CAPTION_COLUMNS = ("caption", "text", "captions", "description")


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a table: ``image`` as written, ``path`` resolved, the caption, id and the rest."""

    index: int  # 0-based data row (line ``index + 2`` of a CSV with its header)
    image: str | None
    path: str | None
    text: str | None
    id: str | None
    meta: dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A table read by :func:`read_table`, with the columns it picked (``None`` when absent)."""

    source: Path
    rows: list[TableRow]
    path_column: str | None
    caption_column: str | None
    id_column: str | None
    columns: list[str]
    meta_schema: pa.Schema


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], src: Path):
    """The column named ``wanted`` (exact, else ignoring case and spaces), or the first candidate."""
    norm = {c.strip().lower(): c for c in reversed(columns)}
    if wanted:
        found = wanted if wanted in columns else norm.get(wanted.strip().lower())
        if found is None:
            raise InputError(f"{src}: no column {wanted!r} (columns: {', '.join(columns)})")
        return found
    return next((norm[c] for c in candidates if c in norm), None)


def read_table(
    path: str | Path,
    path_column: str | None = None,
    caption_column: str | None = None,
    id_column: str | None = None,
    root: str | Path | None = None,
    fmt: str = "auto",
) -> Table:
    """Read a CSV/TSV/Parquet table of image paths and/or captions: the one table reader.

    Columns are found by name, ignoring case and surrounding spaces: the image path is the first of
    ``PATH_COLUMNS`` (``path``, ``image``, ``filepath`` ...), the caption the first of
    ``CAPTION_COLUMNS`` (``caption``, ``text`` ...), the id a column ``id``; or name them. The
    path, caption and id cells are read as text (``007`` stays ``007``); relative paths resolve
    against ``root`` (default: the table's folder). ``fmt`` is ``auto`` (by suffix), ``csv`` or
    ``parquet``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: table not found")
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            tbl = pq.read_table(path)
            columns = tbl.column_names
        else:
            import pyarrow.csv as pacsv

            parse = pacsv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            with pacsv.open_csv(path, parse_options=parse) as reader:
                columns = reader.schema.names
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"{path}: cannot read table ({e})") from e
    pcol = _pick(columns, path_column, PATH_COLUMNS, path)
    ccol = _pick(columns, caption_column, CAPTION_COLUMNS, path)
    icol = _pick(columns, id_column, ("id",), path)
    text_cols = [c for c in (pcol, ccol, icol) if c is not None]
    try:
        if fmt == "parquet":
            tbl = tbl.cast(
                pa.schema(
                    [
                        pa.field(f.name, pa.string()) if f.name in text_cols else f
                        for f in tbl.schema
                    ]
                )
            )
        else:
            types = pacsv.ConvertOptions(column_types=dict.fromkeys(text_cols, pa.string()))
            tbl = pacsv.read_csv(path, parse_options=parse, convert_options=types)
    except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"{path}: cannot read table ({e})") from e
    base = Path(root).expanduser() if root else path.parent
    reserved = {"id", "path", "text", "modality", "embedding"}
    meta_cols = [c for c in columns if c not in text_cols and c not in reserved]
    rows = []
    for n, row in enumerate(tbl.to_pylist()):
        image = row[pcol] if pcol else None
        full = None
        if image is not None and image.strip():
            q = Path(image.strip()).expanduser()
            full = str(q if q.is_absolute() else base / q)
        rows.append(
            TableRow(
                n,
                image,
                full,
                row[ccol] if ccol else None,
                row[icol] if icol else None,
                {c: row[c] for c in meta_cols},
            )
        )
    meta_schema = pa.schema([tbl.schema.field(c) for c in meta_cols])
    return Table(path, rows, pcol, ccol, icol, list(columns), meta_schema)
