"""Image references in requests: data URIs, bare base64, or (when allowed) local files.

Every failure is an :class:`~biomedclip.errors.InputError` / ``ImageError`` naming the input, which
the service turns into a 4xx. Images are decoded with the project's reader, so DICOM, NIfTI,
16-bit PNG/TIFF work like everywhere else (middle frame / slice, the file's window).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image

from biomedclip.errors import ImageError, InputError
from biomedclip.imaging import ReadOptions, read_image

# URI schemes and the ";base64" marker are case-insensitive (RFC 3986 3.1, RFC 2397)
DATA_URI = re.compile(
    r"^data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.ASCII | re.IGNORECASE
)
BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


BARE_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]{24,}={0,2}$", re.ASCII)
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2", ".j2k",
    ".dcm", ".dicom", ".ima", ".nii", ".nii.gz", ".svs", ".ndpi", ".mrxs",
)  # fmt: skip


def has_scheme(value: str, *schemes: str) -> bool:
    """Whether ``value`` starts with one of the (lower-case) ``schemes``, in any case."""
    return value[:8].lower().startswith(schemes)


def image_signature(head: bytes) -> bool:
    """Whether decoded bytes start like an image file the reader knows (by content)."""
    from biomedclip.imaging.source import Source, sniff

    if head[:2] == b"\x1f\x8b":  # gzip: a .nii.gz (the whole head may not be here)
        return True
    if head[:2] == b"BM":  # BMP: also check the declared header size (14 + 12/40/108/124)
        return len(head) >= 18 and int.from_bytes(head[14:18], "little") in (12, 40, 108, 124)
    try:
        return sniff(Source("<input>", data=head)) is not None
    except Exception:  # noqa: BLE001 - undecidable: not an image
        return False


def bare_base64_image(value: str) -> bool:
    """Whether ``value`` is bare base64 (no spaces) of bytes with a known image signature."""
    compact = "".join(value[:1024].split()) if "\n" in value[:1024] else value[:1024]
    if not BARE_BASE64.match(compact[: len(compact) // 4 * 4] or "-"):
        return False
    try:
        head = decode_base64(compact[: min(len(compact), 800) // 4 * 4], "input")
    except InputError:
        return False
    return image_signature(head)


def input_modality(value: str, roots: list[Path]) -> str:
    """``image`` or ``text`` for one /v1/embeddings input given without ``modality``.

    Images are recognised, never guessed: a ``data:`` URI, a ``file://`` URL, bare base64 (no
    spaces) whose bytes start with a known image signature, or an absolute path under an allowed
    directory or with an image suffix (refused later unless allowed). Everything else is text.
    """
    if has_scheme(value, "data:", "file://") or bare_base64_image(value):
        return "image"
    if value.startswith("/") and "\n" not in value and len(value) < 4096:
        if value.lower().endswith(IMAGE_SUFFIXES):
            return "image"
        if roots:
            path = Path(os.path.realpath(value))
            if any(path.is_relative_to(r) for r in roots) and path.is_file():
                return "image"
    return "text"


def decode_base64(payload: str, name: str) -> bytes:
    payload = "".join(payload.split())
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{name}: invalid base64 data ({e})") from e


class ImageResolver:
    """Turns an image reference into bytes or an allowed local path, then into a PIL image."""

    def __init__(self, allow_files: list[str] | None = None, max_pixels: int | None = None):
        self.roots = [Path(d).resolve() for d in allow_files or []]
        self.options = ReadOptions(mode=None, max_pixels=max_pixels, wsi="thumbnail")

    def source(self, ref: str, name: str = "image") -> bytes | Path:
        if not isinstance(ref, str) or not ref.strip():
            raise InputError(f"{name}: empty image reference")
        m = DATA_URI.match(ref)
        if m:
            if not m.group(3):
                raise InputError(f"{name}: data URI must be base64-encoded (';base64,')")
            data = decode_base64(ref[m.end() :], name)
        elif has_scheme(ref, "file://") or (ref.startswith("/") and not bare_base64_image(ref)):
            return self.local_file(ref, name)
        elif "://" in ref:
            raise InputError(
                f"{name}: only data: URIs and (with --allow-files) file:// URLs are accepted"
            )
        elif BASE64_CHARS.match(ref[:4096]):
            data = decode_base64(ref, name)
        else:
            raise InputError(f"{name}: not a data URI, base64 image or file URL")
        if not data:
            raise InputError(f"{name}: the image data is empty")
        return data

    def local_file(self, ref: str, name: str) -> Path:
        if not self.roots:
            raise InputError(
                f"{name}: local files are not allowed by this server (start it with --allow-files)"
            )
        raw = unquote(urlparse(ref).path) if has_scheme(ref, "file://") else ref
        if "\x00" in raw:
            raise InputError(f"{name}: invalid file path")
        path = Path(os.path.realpath(raw))
        if not any(path.is_relative_to(root) for root in self.roots):
            raise InputError(f"{name}: {raw} is outside the allowed directories")
        if not path.is_file():
            raise InputError(f"{name}: {raw}: no such file")
        return path

    def image(self, ref: str | Path, name: str = "image") -> Image.Image:
        """Decode one image (the representative frame/slice of multi-image files).

        A ``Path`` is a file the server itself chose (an index row): no allow-list check.
        """
        src = ref if isinstance(ref, Path) else self.source(ref, name)
        try:
            return read_image(src, self.options).images[0]
        except ImageError as e:
            raise type(e)(str(e).removeprefix("<bytes>: "), name) from e
