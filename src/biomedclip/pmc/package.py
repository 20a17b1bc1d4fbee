"""Read an article package (PMC ``.tar.gz`` or a local folder) into memory, safely.

Members are only read, never extracted to disk, so hostile names (``../x``, absolute paths) are
harmless; oversized members and non-regular files are ignored.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff")
XML_EXTS = (".nxml", ".xml")
MAX_MEMBER_BYTES = 512 * 1024**2


class PackageError(Exception):
    """The package cannot be read (not a gzip/tar, truncated, no article XML)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Package:
    source: str
    xml_name: str
    xml: bytes
    images: dict[str, bytes] = field(default_factory=dict)  # basename -> bytes

    def resolve(self, href: str) -> str | None:
        """The image member a graphic href refers to (hrefs often omit the extension)."""
        base = PurePosixPath(href.replace("\\", "/")).name
        if not base:
            return None
        if base in self.images:
            return base
        lower = {n.lower(): n for n in self.images}
        if base.lower() in lower:
            return lower[base.lower()]
        for ext in IMAGE_EXTS:
            name = lower.get(base.lower() + ext)
            if name:
                return name
        stem = base.lower().rsplit(".", 1)[0] if "." in base else base.lower()
        for ext in IMAGE_EXTS:  # href with another extension (e.g. .tif listed, .jpg shipped)
            name = lower.get(stem + ext)
            if name:
                return name
        return None


def _pick_xml(candidates: dict[str, bytes], source: str) -> tuple[str, bytes]:
    if not candidates:
        raise PackageError("no_nxml", f"{source}: no .nxml article file in the package")
    nxml = sorted(n for n in candidates if n.lower().endswith(".nxml"))
    name = nxml[0] if nxml else sorted(candidates)[0]
    return name, candidates[name]


def read_tar_package(path: Path) -> Package:
    xmls: dict[str, bytes] = {}
    images: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                if not m.isfile() or m.size > MAX_MEMBER_BYTES:
                    continue
                name = PurePosixPath(m.name).name
                low = name.lower()
                if low.endswith(XML_EXTS) or low.endswith(IMAGE_EXTS):
                    f = tf.extractfile(m)
                    if f is None:
                        continue
                    data = f.read()
                    (xmls if low.endswith(XML_EXTS) else images).setdefault(name, data)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PackageError("broken_package", f"{path}: {type(e).__name__}: {e}") from e
    xml_name, xml = _pick_xml(xmls, str(path))
    return Package(str(path), xml_name, xml, images)


def read_dir_package(path: Path) -> Package:
    xmls, images = {}, {}
    for p in sorted(path.iterdir()):
        low = p.name.lower()
        if p.is_file() and p.stat().st_size <= MAX_MEMBER_BYTES:
            if low.endswith(XML_EXTS):
                xmls[p.name] = p.read_bytes()
            elif low.endswith(IMAGE_EXTS):
                images[p.name] = p.read_bytes()
    xml_name, xml = _pick_xml(xmls, str(path))
    return Package(str(path), xml_name, xml, images)


def read_package(path: Path) -> Package:
    path = Path(path)
    if path.is_dir():
        return read_dir_package(path)
    if not path.is_file():
        raise PackageError("missing_package", f"{path}: package file not found")
    return read_tar_package(path)
