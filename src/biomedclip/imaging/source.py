"""An input (path or bytes) with a name for errors, and format sniffing by magic bytes."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from biomedclip.errors import ImageDecodeError, ImageError

HEAD_BYTES = 4096
# Never swallowed. Everything else a decoder raises becomes an ImageError, including Rust panics
# (pyo3's PanicException derives from BaseException) from the pylibjpeg plugins.
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


@contextlib.contextmanager
def decoder_errors(name: str, what: str) -> Iterator[None]:
    """A decoder's error boundary: anything it raises becomes an :class:`ImageError` naming
    ``name`` (``"cannot <what> (...)"``); image errors without a path get it; FATAL passes."""
    try:
        yield
    except ImageError as e:
        if e.path is None:
            raise type(e)(str(e), name) from e
        raise
    except FATAL:
        raise
    except BaseException as e:
        raise ImageDecodeError(f"cannot {what} ({type(e).__name__}: {e})", name) from e


DICOM_EXTS = (".dcm", ".dicom", ".dic", ".ima")
NIFTI_EXTS = (".nii", ".nii.gz", ".hdr")
# OpenSlide formats that are not TIFF containers (TIFF-based ones are found by content).
OPENSLIDE_EXTS = (".mrxs", ".vms", ".vmu", ".svslide")


@dataclass
class Source:
    """A path or in-memory bytes; ``name`` is what errors show."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, source: str | Path | bytes | bytearray | memoryview) -> Source:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise ImageDecodeError("input is empty (0 bytes)", "<bytes>")
            return cls("<bytes>", data=data)
        path = Path(source)
        name = str(source)
        try:
            if not path.is_file():
                raise ImageDecodeError("file not found", name)
            if path.stat().st_size == 0:
                raise ImageDecodeError("file is empty (0 bytes)", name)
        except OSError as e:
            raise ImageDecodeError(f"cannot access file ({e})", name) from e
        return cls(name, path=path)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        try:
            return self.path.open("rb")  # type: ignore[union-attr]
        except OSError as e:
            raise ImageDecodeError(f"cannot open file ({e})", self.name) from e

    def head(self, n: int = HEAD_BYTES) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with self.open() as f:
            return f.read(n)

    def read_all(self) -> bytes:
        if self.data is not None:
            return self.data
        with self.open() as f:
            return f.read()

    @property
    def suffix(self) -> str:
        if self.path is None:
            return ""
        name = self.path.name.lower()
        return ".nii.gz" if name.endswith(".nii.gz") else self.path.suffix.lower()


def _is_nifti_header(h: bytes) -> bool:
    if len(h) >= 348:
        for fmt in ("<i", ">i"):
            size = struct.unpack(fmt, h[:4])[0]
            if size == 348 and h[344:348] in (b"n+1\x00", b"ni1\x00"):
                return True
            if size == 540 and h[4:8] in (b"n+2\x00", b"ni2\x00"):
                return True
    return False


def _gunzip_head(h: bytes, n: int = 600) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(h, n)
    except zlib.error:
        return b""


def sniff(src: Source) -> str | None:
    """The reader for ``src`` by content: ``dicom``, ``nifti``, ``tiff``, ``pillow`` or ``None``.

    ``None`` means "unknown": the caller tries Pillow, which knows more formats than we check.
    The extension is only a fallback for DICOM without the 128-byte preamble (``.dcm``) and for
    non-TIFF OpenSlide formats.
    """
    h = src.head()
    if len(h) >= 132 and h[128:132] == b"DICM":
        return "dicom"
    if h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if _is_nifti_header(h):
        return "nifti"
    if h[:2] == b"\x1f\x8b":
        return "nifti" if _is_nifti_header(_gunzip_head(h)) else None
    if (
        h[:3] == b"\xff\xd8\xff"
        or h[:8] == b"\x89PNG\r\n\x1a\n"
        or h[:6] in (b"GIF87a", b"GIF89a")
        or h[:2] == b"BM"
        or (h[:4] == b"RIFF" and h[8:12] == b"WEBP")
        or h[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
        or h[:4] == b"\xff\x4f\xff\x51"
    ):
        return "pillow"
    suffix = src.suffix
    if suffix in DICOM_EXTS:
        return "dicom"
    if suffix in OPENSLIDE_EXTS:
        return "wsi"
    return None
