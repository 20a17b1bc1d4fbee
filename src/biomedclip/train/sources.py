"""Raw training samples and their decoding: the part of the data path that knows file formats.

A sample is read as a :class:`RawSample` first (a tar member's offsets, or a table row) and decoded
by :class:`Decoder` only when it is used, so resuming skips consumed batches without decoding
anything. Shards hold ``KEY.jpg``/``KEY.png`` + ``KEY.txt`` + ``KEY.json`` per sample (as the PMC
pipeline writes them); tables are CSV / TSV / Parquet files of image paths and captions. Random
augmentations run with a per-sample seed (:func:`sample_seed`, :func:`seeded_transform`), which
makes batches a pure function of the seed and position (also for :mod:`biomedclip.vqa.batches`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomedclip import tables
from biomedclip.errors import BiomedCLIPError, ConfigError, InputError
from biomedclip.imaging import load_image
from biomedclip.io_utils import expand_braces
from biomedclip.tokenizer import clean_text

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class RawSample:
    """An undecoded sample: ``kind`` "tar" (shard, {ext: (offset, size)}) or "file" (path, caption)."""

    key: str
    kind: str
    ref: Any


def detect_format(spec: str | list[str], fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    first = spec[0] if isinstance(spec, list) else spec
    return TABLE_SUFFIXES.get(Path(str(first)).suffix.lower(), "wds")


def resolve_shards(spec: str | list[str]) -> list[str]:
    """Shard paths from a directory, a glob, ``{000..009}`` braces, a file, or a list of those."""
    items = spec if isinstance(spec, list) else [spec]
    out: list[str] = []
    for item in items:
        item = os.path.expanduser(str(item))
        for expanded in expand_braces(item):
            p = Path(expanded)
            if p.is_dir():
                found = sorted(str(x) for x in p.glob("*.tar"))
                if not found:
                    raise ConfigError(f"{p}: no .tar shards in this directory")
                out.extend(found)
            elif any(c in expanded for c in "*?["):
                found = sorted(glob.glob(expanded))
                if not found:
                    raise ConfigError(f"{expanded}: no shards match this pattern")
                out.extend(found)
            elif p.is_file():
                out.append(str(p))
            else:
                raise ConfigError(f"{expanded}: shard not found")
    if not out:
        raise ConfigError(f"{spec}: no shards")
    return out


def index_shard(path: str) -> list[RawSample]:
    """The samples of a tar shard (member offsets grouped by key), reading headers only."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                base = os.path.basename(m.name)
                if base.startswith(".") or "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                key = os.path.join(os.path.dirname(m.name), stem)
                if key not in groups:
                    groups[key] = {}
                    order.append(key)
                groups[key][ext.lower()] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError) as e:
        log.warning("%s: unreadable shard skipped (%s)", path, e)
        return []
    return [RawSample(key, "tar", (path, groups[key])) for key in order]


def read_table(
    path: str | Path, fmt: str, image_column: str, caption_column: str, root: str | None = None
) -> list[RawSample]:
    """Rows of a CSV/TSV/Parquet table as raw samples (:func:`biomedclip.tables.read_table`;
    relative paths against ``root`` or the table's folder)."""
    try:
        t = tables.read_table(path, image_column, caption_column, root=root, fmt=fmt)
    except InputError as e:
        raise ConfigError(f"{e}; set data.image_column / data.caption_column") from e
    return [
        RawSample(f"{t.source.name}:{r.index}", "file", (r.path or "", r.text or ""))
        for r in t.rows
    ]


# ---- decoding -----------------------------------------------------------------------------


class BadSample(Exception):
    """A sample that cannot be used (reason in the message)."""


class Decoder:
    """Raw sample -> (PIL image, caption, metadata); raises :class:`BadSample`."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def _read(self, shard: str, offset: int, size: int) -> bytes:
        f = self._handles.get(shard)
        if f is None:
            if len(self._handles) > 8:
                for h in self._handles.values():
                    h.close()
                self._handles.clear()
            f = self._handles[shard] = open(shard, "rb")  # noqa: SIM115 - cached handle
        f.seek(offset)
        return f.read(size)

    def __call__(self, raw: RawSample):
        meta: dict[str, Any] = {}
        if raw.kind == "tar":
            shard, members = raw.ref
            ext = next((e for e in IMAGE_EXTS if e in members), None)
            if ext is None:
                raise BadSample(f"{shard}:{raw.key}: no image member ({', '.join(members)})")
            if "json" in members:
                try:
                    meta = json.loads(self._read(shard, *members["json"]).decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    meta = {}
            if "txt" in members:
                caption = self._read(shard, *members["txt"]).decode("utf-8", errors="replace")
            else:
                caption = str(meta.get("caption", "")) if isinstance(meta, dict) else ""
            source: bytes | str = self._read(shard, *members[ext])
            name = f"{shard}:{raw.key}.{ext}"
        else:
            source, caption = raw.ref
            name = str(source)
        if not clean_text(caption):
            raise BadSample(f"{name}: empty caption")
        try:
            image = load_image(source)
        except BiomedCLIPError as e:
            raise BadSample(f"{name}: {e}") from e
        return image, caption, meta if isinstance(meta, dict) else {}


def sample_seed(seed: int, stream: int, index: int) -> int:
    """A per-sample augmentation seed (stable under resume and worker count)."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1, np.uint64)[0] >> 1)


def seeded_transform(transform: Callable, image, seed: int) -> torch.Tensor:
    """Apply a random transform with its own RNG, leaving the global RNG untouched."""
    saved = torch.get_rng_state()
    try:
        torch.default_generator.manual_seed(seed)  # the CPU generator only: cheap
        return transform(image)
    finally:
        torch.set_rng_state(saved)
