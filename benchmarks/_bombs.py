"""Hostile image files built in memory: small on the wire, huge once inflated or decoded."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import numpy as np


def _dicom_head(transfer_syntax: str) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, meta)
    return buf.getvalue()


def _elements(rows: int, cols: int) -> bytes:
    """Explicit VR little-endian image pixel module elements of an 8-bit grayscale image."""
    out = struct.pack("<HH2sHH", 0x0028, 0x0002, b"US", 2, 1)
    out += struct.pack("<HH2sH", 0x0028, 0x0004, b"CS", 12) + b"MONOCHROME2 "
    for elem, value in ((0x0010, rows), (0x0011, cols), (0x0100, 8), (0x0101, 8), (0x0102, 7)):
        out += struct.pack("<HH2sHH", 0x0028, elem, b"US", 2, value)
    return out + struct.pack("<HH2sHH", 0x0028, 0x0103, b"US", 2, 0)


def deflated_dicom_bomb(inflated_bytes: int = 300 * 2**20, rows: int = 100, cols: int = 100):
    """A Deflated Explicit VR Little Endian DICOM: a tiny image after a private OB element of
    ``inflated_bytes`` zeros (~1000:1, so 300 MiB inflate from ~300 KB)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(_elements(rows, cols))]
    parts.append(z.compress(struct.pack("<HH2sHI", 0x0029, 0x1010, b"OB", 0, inflated_bytes)))
    chunk = bytes(2**20)
    left = inflated_bytes
    while left:
        n = min(left, len(chunk))
        parts.append(z.compress(chunk[:n]))
        left -= n
    pixels = rows * cols
    parts.append(z.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)))
    parts.append(z.compress(bytes(pixels)))
    parts.append(z.flush())
    return _dicom_head(DeflatedExplicitVRLittleEndian) + b"".join(parts)


def jpeg_dicom_lying_about_size(rows: int = 64, cols: int = 64, real=(4000, 4000)) -> bytes:
    """JPEG Baseline DICOM whose header says rows x cols but whose frame is ``real`` pixels."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.new("L", real, 0).save(buf, format="JPEG", quality=10)
    frame = buf.getvalue()
    data = encapsulate([frame])
    data += b"\xfe\xff\xdd\xe0" + bytes(4)  # sequence delimiter
    px = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + data
    return _dicom_head(JPEGBaseline8Bit) + _elements(rows, cols) + px


def nifti_gz_bomb(shape=(2048, 2048, 2048), dtype=np.uint8) -> bytes:
    """A gzipped NIfTI-1 declaring ``shape`` with all-zero data (8 GiB from a few MB)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    head = io.BytesIO()
    header.write_to(head)
    raw = head.getvalue() + b"\0" * (352 - len(head.getvalue()))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        gz.write(raw)
        chunk = bytes(2**22)
        left = int(np.prod(shape)) * np.dtype(dtype).itemsize
        while left > 0:  # stops after 256 MiB: the header still declares the whole volume
            n = min(left, len(chunk))
            gz.write(chunk[:n])
            left -= n
            if left < int(np.prod(shape)) * np.dtype(dtype).itemsize - 256 * 2**20:
                break
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG header (IHDR) declaring ``width x height`` with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 is patched to declare ``width x height``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16, 16), 0).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A TIFF whose IFD declares ``width x height`` 8-bit pixels in one tiny strip."""
    buf = io.BytesIO()
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    buf.write(b"II*\x00" + struct.pack("<I", 8))
    buf.write(struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        buf.write(struct.pack("<HHII", tag, typ, count, value))
    buf.write(struct.pack("<I", 0))
    buf.write(b"\0" * 16)
    return buf.getvalue()


# ---- issue 24: headers whose declared structure was not counted -----------------------------
def zeros_deflate(n: int, chunk: int = 2**20) -> bytes:
    """A zlib stream of ``n`` zero bytes without compressing them all: after a full flush every
    further chunk compresses to the same bytes, and the Adler-32 of zeros is ``n mod 65521``."""
    if n < 2 * chunk:
        return zlib.compress(bytes(n), 9)
    z = zlib.compressobj(9)
    k, rest = divmod(n, chunk)
    first = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
    body = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
    tail = z.compress(bytes(rest)) + z.flush()
    return first + body * (k - 1) + tail[:-4] + struct.pack(">I", (n % 65521) << 16 | 1)


def _tiled_zeros(tif, shape, dtype, tile: int, planar: bool = False) -> None:
    """Write one deflate-tiled RGB page of zeros from pre-encoded tiles (shared bytes)."""
    h, w = shape[1:] if planar else shape[:2]
    n = -(-h // tile) * -(-w // tile) * (3 if planar else 1)
    blob = zeros_deflate(tile * tile * np.dtype(dtype).itemsize * (1 if planar else 3))
    tif.write(
        iter([blob] * n),
        shape=shape,
        dtype=dtype,
        photometric="rgb",
        planarconfig="separate" if planar else "contig",
        compression="zlib",
        tile=(tile, tile),
    )


def planar_tiff(width: int = 7000, height: int = 2500) -> bytes:
    """One planar float32 RGB page, shape (3, height, width), planarconfig separate, deflated
    zero tiles (~100 KB on the wire for 7000 x 2500). Pillow cannot open it, so tifffile reads
    it; a reader counting ``shape[:-1]`` (3 x height) never sees the width."""
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        _tiled_zeros(tif, (3, height, width), np.float32, 512, planar=True)
    return buf.getvalue()


def nifti_spacing(voxels: int, spacing=(1.0, 99.0, 1.0)) -> bytes:
    """A gzipped NIfTI-1 volume of exactly ``voxels`` voxels (side x side x 1, zeros) whose
    voxel spacing makes aspect correction resample the axial slice ``spacing[1]``-fold."""
    import nibabel as nib

    side = int(voxels**0.5)
    assert side * side == voxels, "voxels must be a square"
    img = nib.Nifti1Image(np.zeros((side, side, 1), np.uint8), np.diag([*spacing, 1.0]))
    img.header.set_zooms(spacing)
    return gzip.compress(img.to_bytes(), 9)


def template_format_spec(width: int = 30_000_000) -> str:
    """A template that passes a ``'{}' in t`` check and a 300-character limit, and makes
    ``str.format`` build a ``width``-character prompt: ``"{{}}{0:>30000000}"``."""
    return "{{}}{0:>" + str(width) + "}"


def big_tile_slide(level: int = 1024, tile: int = 8192, base: int = 8192) -> bytes:
    """A pyramidal RGB TIFF readable by tifffile (deflate): a ``base``^2 level 0 in 512^2 tiles
    and a ``level``^2 level stored as one ``tile``^2 tile (tiles may exceed the image), so a
    reader that decodes whole tiles allocates ``tile``^2 x 3 bytes for a ``level``^2 image."""
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        _tiled_zeros(tif, (base, base, 3), np.uint8, 512)
        _tiled_zeros(tif, (level, level, 3), np.uint8, tile)
    return buf.getvalue()
