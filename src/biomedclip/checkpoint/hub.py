"""Resolve a model source to local files: hub id, local directory, or a single weights file.

Hub sources (``hf-hub:org/repo[@revision]``) are downloaded and cached with ``huggingface_hub``.
The cache is tried first, so a cached model works offline (and with ``HF_HUB_OFFLINE=1``). When
nothing is cached and the hub cannot be reached, we fail within seconds with instructions instead of
letting the client retry for half a minute.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from biomedclip.config import CONFIG_FILE, HUB_PREFIX, RELEASED_WEIGHTS_FILE, WEIGHTS_FILE
from biomedclip.errors import ModelNotFoundError
from biomedclip.tokenizer import TOKENIZER_FILES

# Preferred weights file names, best first (safetensors before pickle).
WEIGHTS_CANDIDATES = (
    WEIGHTS_FILE,
    "open_clip_pytorch_model.safetensors",
    "model.safetensors",
    RELEASED_WEIGHTS_FILE,
    "pytorch_model.bin",
)
WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass
class ResolvedSource:
    """Local paths for one model source."""

    source: str
    weights: Path | None
    config: Path | None
    tokenizer_dir: Path | None
    repo_id: str | None = None


def is_hub_id(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def parse_hub_id(source: str) -> tuple[str, str | None]:
    """``hf-hub:org/repo@rev`` -> (``org/repo``, ``rev``)."""
    ident = source[len(HUB_PREFIX) :].strip().strip("/")
    revision = None
    if "@" in ident:
        ident, revision = ident.split("@", 1)
    if ident.count("/") != 1 or not all(ident.split("/")):
        raise ModelNotFoundError(f"{source}: expected 'hf-hub:<org>/<repo>[@revision]'")
    return ident, revision or None


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint."""
    url = urlparse(endpoint or _endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true")


def _hub_file(repo_id, filename, revision, cache_dir, local_only, endpoint) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_only,
                endpoint=endpoint,
                library_name="biomedclip",
            )
        )
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def _fetch_hub(
    source: str,
    cache_dir: str | Path | None,
    local_only: bool,
    endpoint: str | None,
    need_weights: bool,
) -> ResolvedSource:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    repo_id, revision = parse_hub_id(source)
    try:
        config = _hub_file(repo_id, CONFIG_FILE, revision, cache_dir, local_only, endpoint)
        if config is None:
            raise ModelNotFoundError(f"{source}: no {CONFIG_FILE} in the repository")
        weights = None
        if need_weights:
            for name in (WEIGHTS_FILE, RELEASED_WEIGHTS_FILE):
                weights = _hub_file(repo_id, name, revision, cache_dir, local_only, endpoint)
                if weights is not None:
                    break
            if weights is None:
                raise ModelNotFoundError(
                    f"{source}: no weights ({WEIGHTS_FILE} or {RELEASED_WEIGHTS_FILE}) found"
                )
        tok_dir = None
        for name in TOKENIZER_FILES:
            path = _hub_file(repo_id, name, revision, cache_dir, local_only, endpoint)
            if path is not None and tok_dir is None:
                tok_dir = path.parent
    except RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"{source}: repository not found on the hub") from e
    except HfHubHTTPError as e:
        raise ModelNotFoundError(f"{source}: hub request failed ({e})") from e
    return ResolvedSource(source, weights, config, tok_dir, repo_id)


def resolve_source(
    source: str | os.PathLike,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    need_weights: bool = True,
) -> ResolvedSource:
    """Turn a hub id, directory or weights file into local paths (downloading if needed)."""
    if is_hub_id(source):
        source = str(source)
        endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        parse_hub_id(source)  # a malformed id is an error, not a cache miss
        try:  # the cache first: works offline
            return _fetch_hub(source, cache_dir, True, endpoint, need_weights)
        except ModelNotFoundError:
            pass
        offline_help = (
            "Download the model once with network access (it is then cached), or point --model at "
            "a local directory holding open_clip_config.json and the weights "
            "(e.g. `git clone https://huggingface.co/"
            f"{source[len(HUB_PREFIX) :]}` elsewhere, then `--model ./that-dir`)."
        )
        if _offline():
            raise ModelNotFoundError(
                f"{source}: not in the local cache and HF_HUB_OFFLINE is set. {offline_help}"
            )
        if not hub_reachable(endpoint):
            raise ModelNotFoundError(
                f"{source}: not in the local cache and the hub ({endpoint or _endpoint()}) "
                f"cannot be reached. {offline_help}"
            )
        return _fetch_hub(source, cache_dir, False, endpoint, need_weights)

    path = Path(source).expanduser()
    if path.is_dir():
        config = path / CONFIG_FILE
        weights = _find_weights(path) if need_weights else None
        if need_weights and weights is None:
            raise ModelNotFoundError(
                f"{path}: no weights file ({', '.join(WEIGHTS_CANDIDATES)} or any "
                f"{'/'.join(WEIGHTS_SUFFIXES)})"
            )
        has_tok = any((path / n).is_file() for n in ("tokenizer.json", "vocab.txt"))
        return ResolvedSource(
            str(source), weights, config if config.is_file() else None, path if has_tok else None
        )
    if path.is_file():
        sibling_cfg = path.parent / CONFIG_FILE
        has_tok = any((path.parent / n).is_file() for n in ("tokenizer.json", "vocab.txt"))
        return ResolvedSource(
            str(source),
            path,
            sibling_cfg if sibling_cfg.is_file() else None,
            path.parent if has_tok else None,
        )
    raise ModelNotFoundError(
        f"{source}: no such file or directory (expected 'hf-hub:<org>/<repo>', a model directory "
        "or a weights file)"
    )


def _find_weights(directory: Path) -> Path | None:
    for name in WEIGHTS_CANDIDATES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.suffix in WEIGHTS_SUFFIXES and p.is_file())
    found.sort(key=lambda p: p.suffix != ".safetensors")
    return found[0] if found else None
