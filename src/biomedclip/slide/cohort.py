"""The slides of a cohort: from slide files, a folder, a glob or a CSV/Parquet manifest.

A manifest has a path column (``path``, ``slide``, ``image`` ...) and optionally ``slide_id``,
``label`` and ``patient_id``; relative paths resolve against the manifest's folder. Without a
``slide_id`` a slide is named by its file name without the extension (as CLAM and TRIDENT do);
two slides with the same id are refused.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from biomedclip.errors import InputError

SLIDE_EXTENSIONS = frozenset(
    {
        ".svs",
        ".tif",
        ".tiff",
        ".ndpi",
        ".vms",
        ".vmu",
        ".scn",
        ".mrxs",
        ".svslide",
        ".bif",
        ".qptiff",
        ".dcm",
    }
)
TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".parquet", ".pq"})


@dataclass(frozen=True)
class SlideInput:
    """One slide of a cohort."""

    slide_id: str
    path: str
    label: str | None = None
    patient_id: str | None = None


def slide_id_of(path: str | Path) -> str:
    name = Path(path).name
    for ext in sorted(SLIDE_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _check_unique(slides: list[SlideInput], what: str) -> list[SlideInput]:
    seen: dict[str, str] = {}
    for s in slides:
        if s.slide_id in seen:
            raise InputError(
                f"{what}: two slides are named {s.slide_id!r} ({seen[s.slide_id]} and {s.path}); "
                "slide ids must be unique (give a manifest with a slide_id column)"
            )
        if not s.slide_id or "/" in s.slide_id or s.slide_id.startswith("."):
            raise InputError(f"{what}: {s.slide_id!r} is not usable as a file name")
        seen[s.slide_id] = s.path
    return slides


def from_manifest(path: str | Path) -> list[SlideInput]:
    """Slides of a CSV/TSV/Parquet manifest (``slide_id, path[, label, patient_id]``)."""
    from biomedclip.tables import read_table

    try:  # the id column is read as text: slide "007" stays "007"
        table = read_table(path, id_column="slide_id")
    except InputError as e:
        if "no column 'slide_id'" not in str(e):
            raise
        table = read_table(path)
    if table.path_column is None:
        raise InputError(f"{path}: no path column (path, image, file, ...) in {table.columns}")
    cols = {c.strip().lower(): c for c in table.columns}
    slides = []
    for row in table.rows:
        if not row.path:
            raise InputError(f"{path}: row {row.index + 2} has no slide path")
        meta = row.meta
        raw_id = row.id
        label = meta.get(cols["label"]) if "label" in cols else None
        patient = meta.get(cols["patient_id"]) if "patient_id" in cols else None
        slides.append(
            SlideInput(
                str(raw_id) if raw_id not in (None, "") else slide_id_of(row.path),
                row.path,
                None if label is None else str(label),
                None if patient is None else str(patient),
            )
        )
    return _check_unique(slides, str(path))


def from_inputs(inputs: Sequence[str | Path]) -> list[SlideInput]:
    """Slides of the command line: slide files, folders (their slide files, not recursive),
    globs (``"cohort/**/*.svs"``), or one manifest table."""
    if not inputs:
        raise InputError("no slides given")
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in TABLE_EXTENSIONS:
        return from_manifest(inputs[0])
    paths: list[str] = []
    for given in map(str, inputs):
        p = Path(given)
        if p.is_dir():
            found = sorted(
                str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in SLIDE_EXTENSIONS
            )
            if not found:
                raise InputError(f"{p}: no slide files ({', '.join(sorted(SLIDE_EXTENSIONS))})")
            paths += found
        elif p.exists():
            paths.append(given)
        elif any(ch in given for ch in "*?["):
            found = sorted(f for f in glob.glob(given, recursive=True) if Path(f).is_file())
            if not found:
                raise InputError(f"{given}: the pattern matches no file")
            paths += found
        else:
            raise InputError(f"{given}: no such slide, folder or pattern")
    return _check_unique([SlideInput(slide_id_of(p), p) for p in paths], "slides")
