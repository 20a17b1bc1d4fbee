"""sha256 verification of files that claim to be the released checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from biomedclip.config import HUB_ID, RELEASED_SHA256, RELEASED_WEIGHTS_FILE
from biomedclip.errors import ChecksumError


def _cache_file() -> Path:
    root = os.environ.get("BIOMEDCLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "biomedclip"
    )
    return Path(root) / "sha256.json"


def sha256_file(path: str | Path, use_cache: bool = True) -> str:
    """Hex sha256 of a file; remembered per (path, size, mtime) so repeated loads are instant."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = _cache_file()
    cache: dict[str, str] = {}
    if use_cache:
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if use_cache:
        cache[key] = digest
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_path)
        except OSError:
            pass
    return digest


def claims_released(path: str | Path, repo_id: str | None = None) -> bool:
    """True when a file presents itself as the released BiomedCLIP weights.

    That is the released file name, fetched from the released hub repo or lying under a directory
    named after it (the hub cache, or a git clone of the hub repo).
    """
    path = Path(path)
    if path.name != RELEASED_WEIGHTS_FILE:
        return False
    repo_name = HUB_ID.split("/")[1]
    return repo_id == HUB_ID or repo_name in str(path) or repo_name in str(path.resolve())


def verify_sha256(path: str | Path, expected: str = RELEASED_SHA256) -> str:
    """Raise :class:`ChecksumError` unless the file's sha256 equals ``expected``."""
    digest = sha256_file(path)
    if digest != expected.lower():
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match the released BiomedCLIP checkpoint "
            f"({expected}); the file is corrupt, truncated or not the released weights. "
            "Delete it and download again."
        )
    return digest
