"""File-system helpers shared by every long job: atomic writes, deterministic tar files, braces.

One way to write a file: :func:`atomic_path` (a temporary file beside the target, fsync, rename),
with :func:`atomic_open` and the ``atomic_write_*`` shortcuts on top. Readers never see a
half-written file and a kill leaves at most a ``.<name>.<random>.tmp`` file, which the resumable
jobs delete. The temporary file is created with ``os.open(..., 0o666)`` so the kernel applies the
umask: the process-wide umask is never read or changed (threads may be writing meanwhile).

One way to write a tar file: :func:`tar_writer` + :func:`add_tar_member` (or :func:`tar_bytes`),
with fixed mtime, owner and mode, so the same members give the same bytes on every run. And one
way to expand ``shard-{000..009}.tar`` path patterns: :func:`expand_braces`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z, the mtime of every tar member we write


def _create_temp_beside(path: Path) -> Path:
    """A new empty ``.<name>.<random>.tmp`` in ``path``'s folder, with the permissions that a
    plain ``open()`` would give (0666 less the umask, applied by the kernel)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path}: cannot create a temporary file beside it")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is fsync'd and renamed onto
    ``path``, on an exception it is removed. For writers that want a file name (safetensors, FAISS,
    ONNX); everything else uses :func:`atomic_open`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp_beside(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`: ``path`` appears whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion (``shard-{000..009}.tar``, ``{train,val}-0.tar``; zero padding
    kept), the one used for every path list: a pattern without braces is returned as is."""
    if "{" not in pattern:
        return [pattern]
    from braceexpand import UnbalancedBracesError, braceexpand

    from biomedclip.errors import InputError

    try:
        return list(braceexpand(pattern))
    except UnbalancedBracesError as e:
        raise InputError(f"{pattern}: unbalanced braces ({e})") from e


def tar_writer(fileobj: IO[bytes]) -> tarfile.TarFile:
    """A tar writer (USTAR) on an open binary file; add members with :func:`add_tar_member`."""
    return tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT)


def add_tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``data`` as the regular file ``name`` with fixed mtime, owner and mode (0444)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data))


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A whole tar file of ``(name, data)`` members, in order, in memory."""
    buf = io.BytesIO()
    with tar_writer(buf) as tf:
        for name, data in members:
            add_tar_member(tf, name, data)
    return buf.getvalue()
