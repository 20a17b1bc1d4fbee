"""Byte-deterministic tar writing: fixed mtime, owner, mode and member order."""

from __future__ import annotations

import io
import tarfile

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data))


def open_writer(fileobj) -> tarfile.TarFile:
    return tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT)


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with open_writer(buf) as tf:
        for name, data in members:
            add_bytes(tf, name, data)
    return buf.getvalue()
