"""The output folder of a feature extraction and what it records (torch-free).

``DIR/h5_files/<id>.h5`` and/or ``DIR/parquet_files/<id>.parquet`` (:mod:`.features_file`),
then ``DIR/done/<id>.json``, the slide's done marker, written after its files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import InputError
from biomedclip.imaging.options import ReadOptions
from biomedclip.slide import features_file as ff
from biomedclip.slide.patching import PatchSettings

FORMATS = ("h5", "parquet", "both")
DONE_DIR = "done"


@dataclass(frozen=True)
class ExtractSettings:
    """What a feature extraction writes: the patching, the file format(s) and the read limits."""

    patch: PatchSettings = field(default_factory=PatchSettings)
    format: str = "h5"  # h5, parquet or both
    max_pixels: int | None = ReadOptions().max_pixels  # per read (the decode budget)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"format {self.format!r}: use one of {', '.join(FORMATS)}")

    @property
    def read_options(self) -> ReadOptions:
        return ReadOptions(max_pixels=self.max_pixels)

    def files(self, out_dir: str | Path, slide_id: str) -> list[Path]:
        out = []
        if self.format in ("h5", "both"):
            out.append(ff.h5_path(out_dir, slide_id))
        if self.format in ("parquet", "both"):
            out.append(ff.parquet_path(out_dir, slide_id))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"patch": self.patch.identity(), "format": self.format}


def done_path(out_dir: str | Path, slide_id: str) -> Path:
    return Path(out_dir) / DONE_DIR / f"{slide_id}.json"


def is_done(out_dir: str | Path, slide_id: str, settings: ExtractSettings) -> bool:
    """The slide's done marker and every feature file it names exist."""
    marker = done_path(out_dir, slide_id)
    return marker.is_file() and all(p.is_file() for p in settings.files(out_dir, slide_id))
