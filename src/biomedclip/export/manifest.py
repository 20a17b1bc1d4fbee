"""What every export writes beside its files, and how its folder appears atomically.

``export_manifest.json``: the format, the source and its weights' sha256, every written file with
its size and sha256, the parity measured at export time and the versions of the libraries used.
An export is built in a temporary folder beside ``OUT`` and renamed into place once verified, so
``OUT`` never holds a half-written or unverified export.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from biomedclip.checkpoint.integrity import sha256_file
from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_write_json

MANIFEST_FILE = "export_manifest.json"
LIBRARIES = (
    "biomedclip",
    "torch",
    "timm",
    "transformers",
    "tokenizers",
    "open_clip_torch",
    "onnx",
    "onnxruntime",
)


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of ``names`` (default: what an export depends on; ``None``: absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def source_info(model) -> dict[str, Any]:
    """The model's source and its weights file's sha256 (``None`` for an in-memory model)."""
    info = getattr(model, "load_info", None)
    return {
        "source": getattr(info, "source", None),
        "weights": getattr(info, "weights", None),
        "sha256": info.sha256 if info is not None and info.weights else None,
    }


def write_manifest(
    directory: Path,
    fmt: str,
    model,
    parity: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write ``export_manifest.json`` (last, listing every other file) and return it."""
    files = {
        p.relative_to(directory).as_posix(): {
            "bytes": p.stat().st_size,
            "sha256": sha256_file(p, use_cache=False),
        }
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    }
    manifest = {
        "format": fmt,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": source_info(model),
        "options": options,
        "parity": parity,
        "files": files,
        "versions": library_versions(),
    }
    atomic_write_json(directory / MANIFEST_FILE, manifest)
    return manifest


@contextlib.contextmanager
def staged_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it becomes ``out``."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: directory is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f"{out.name}_partial_{secrets.token_hex(4)}")
    stage.mkdir()
    try:
        yield stage
        if out.exists():
            old = out.with_name(f"{out.name}_old_{secrets.token_hex(4)}")
            os.replace(out, old)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
