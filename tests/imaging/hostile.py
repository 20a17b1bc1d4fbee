"""Structure-aware hostile files: valid headers whose declared sizes, layouts and codecs sit at
and past the limits, with little data behind them (or real compressed data of the declared size).

Each builder takes plain parameters (what a header declares) and returns bytes; the fuzz test
draws the parameters with Hypothesis and the regression corpus (``hostile_corpus.py``) names
the cases found.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

# ---- TIFF (also BigTIFF, planar, tiled, multi-page, pyramidal slides) ----------------------
_SHORT, _LONG, _RATIONAL, _ASCII, _LONG8 = 3, 4, 5, 2, 16


@dataclass(frozen=True)
class TiffPage:
    width: int
    height: int
    samples: int = 1
    bits: int = 8
    sample_format: int = 1  # 1 uint, 2 int, 3 float
    planar: int = 1  # 1 contiguous, 2 separate
    tile: tuple[int, int] | None = None  # (width, length) or strips
    rows_per_strip: int | None = None
    compression: int = 1  # 1 none, 8 deflate (real zeros of the declared segment size)
    description: str | None = None
    resolution: tuple[float, int] | None = None  # (pixels per unit, unit 2 inch / 3 cm)
    photometric: int | None = None


@functools.lru_cache(maxsize=64)
def deflated_zeros(n: int) -> bytes:
    """A zlib stream inflating to ``n`` zero bytes (n up to a few hundred MiB)."""
    z = zlib.compressobj(9)
    chunk = bytes(min(n, 2**22))
    parts, left = [], n
    while left > 0:
        k = min(left, len(chunk))
        parts.append(z.compress(chunk[:k]))
        left -= k
    parts.append(z.flush())
    return b"".join(parts)


def _segments(p: TiffPage) -> tuple[int, int]:
    """(number of segments, bytes per decoded segment) the page declares."""
    per_px = max(p.samples if p.planar == 1 else 1, 1) * max(p.bits // 8, 1)
    planes = p.samples if p.planar == 2 else 1
    if p.tile:
        tw, th = max(p.tile[0], 1), max(p.tile[1], 1)
        n = -(-p.width // tw) * -(-p.height // th) * planes
        return n, tw * th * per_px
    rps = max(p.rows_per_strip or p.height, 1)
    return -(-p.height // rps) * planes, p.width * rps * per_px


def tiff(
    pages: list[TiffPage],
    bigtiff: bool = False,
    max_segments: int = 4096,
    max_deflate: int = 2**26,
) -> bytes:
    """A little-endian (Big)TIFF with one IFD per page. Segment data: ``compression=1`` points
    every segment at the same 16 bytes; ``compression=8`` stores real deflated zeros of the
    declared segment size (shared by all segments). Past ``max_segments`` the offset arrays
    are cut short (a truncated-structure case)."""
    off_fmt, cnt_type = ("<Q", _LONG8) if bigtiff else ("<I", _LONG)
    entry_size = 20 if bigtiff else 12
    inline = 8 if bigtiff else 4  # bytes a value holds in the entry itself
    head = (
        b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) if bigtiff else b"II*\x00" + struct.pack("<I", 8)
    )
    body = bytearray(head)
    blobs: dict[int, int] = {}

    def blob(data: bytes) -> int:
        at = len(body)
        body.extend(data)
        return at

    ifd_offsets: list[int] = []
    ifds: list[tuple[int, list]] = []
    for p in pages:
        n, seg_bytes = _segments(p)
        n_written = max(min(n, max_segments), 1)
        if p.compression == 8 and seg_bytes <= max_deflate:
            key = seg_bytes
            if key not in blobs:
                blobs[key] = blob(deflated_zeros(seg_bytes))
            data_at, data_len = blobs[key], len(deflated_zeros(seg_bytes))
        else:
            data_at, data_len = blob(bytes(16)), 16
        offsets_at = blob(b"".join(struct.pack(off_fmt, data_at) for _ in range(n_written)))
        counts_at = blob(b"".join(struct.pack(off_fmt, data_len) for _ in range(n_written)))
        bits_inline = struct.pack("<" + "H" * p.samples, *([p.bits] * p.samples))
        bits_at = blob(bits_inline)
        entries = [
            (256, _LONG, 1, p.width),
            (257, _LONG, 1, p.height),
            (258, _SHORT, p.samples, bits_inline if 2 * p.samples <= inline else bits_at),
            (259, _SHORT, 1, p.compression),
            (262, _SHORT, 1, p.photometric or (2 if p.samples >= 3 else 1)),
            (277, _SHORT, 1, p.samples),
            (284, _SHORT, 1, p.planar),
            (339, _SHORT, 1, p.sample_format),
        ]
        seg_tags = (324, 325) if p.tile else (273, 279)
        entries.append((seg_tags[0], cnt_type, n_written, offsets_at if n_written > 1 else data_at))
        entries.append((seg_tags[1], cnt_type, n_written, counts_at if n_written > 1 else data_len))
        if p.tile:
            entries += [(322, _LONG, 1, p.tile[0]), (323, _LONG, 1, p.tile[1])]
        else:
            entries.append((278, _LONG, 1, p.rows_per_strip or p.height))
        if p.description:
            text = p.description.encode() + b"\0"
            entries.append((270, _ASCII, len(text), blob(text) if len(text) > 4 else text))
        if p.resolution:
            num = int(p.resolution[0] * 1000)
            rat = blob(struct.pack("<II", num, 1000))
            entries += [(282, _RATIONAL, 1, rat), (283, _RATIONAL, 1, rat)]
            entries.append((296, _SHORT, 1, p.resolution[1]))
        ifds.append((len(body), sorted(entries)))
        body.extend(b"\0" * (8 + len(entries) * entry_size + 8))  # room for the IFD
        ifd_offsets.append(ifds[-1][0])
    for k, (at, entries) in enumerate(ifds):
        nxt = ifd_offsets[k + 1] if k + 1 < len(ifds) else 0
        out = bytearray(struct.pack("<Q" if bigtiff else "<H", len(entries)))
        for tag, typ, count, value in entries:
            if isinstance(value, bytes):
                val = value.ljust(8 if bigtiff else 4, b"\0")
            elif typ == _SHORT and count <= (4 if bigtiff else 2) and isinstance(value, int):
                val = struct.pack("<H", value).ljust(8 if bigtiff else 4, b"\0")
            else:
                val = struct.pack(off_fmt, value)
            out += struct.pack("<HHQ" if bigtiff else "<HHI", tag, typ, count) + val
        out += struct.pack(off_fmt, nxt)
        body[at : at + len(out)] = out
    first = ifd_offsets[0]
    if bigtiff:
        body[8:16] = struct.pack("<Q", first)
    else:
        body[4:8] = struct.pack("<I", first)
    return bytes(body)


def aperio(width: int, height: int, tile: int, mag: int = 20, mpp: float = 0.5) -> str:
    return (
        f"Aperio Image Library v10.0.50\r\n{width}x{height} [0,0 {width}x{height}] "
        f"({tile}x{tile}) |AppMag = {mag}|MPP = {mpp}"
    )


def pyramid(
    width: int,
    height: int,
    tile: int,
    levels: int = 3,
    compression: int = 8,
    top_tile: int | None = None,
    max_deflate: int = 2**26,
) -> bytes:
    """An Aperio-style pyramidal slide: ``levels`` tiled RGB pages halving in size; the smallest
    level may declare its own (hostile) tile size ``top_tile``."""
    pages = []
    for k in range(levels):
        w, h = max(width >> k, 1), max(height >> k, 1)
        t = top_tile if (top_tile and k == levels - 1) else tile
        desc = aperio(width, height, tile) if k == 0 else None
        pages.append(
            TiffPage(w, h, samples=3, tile=(t, t), compression=compression, description=desc)
        )
    return tiff(pages, max_deflate=max_deflate)


# ---- DICOM ----------------------------------------------------------------------------------
def dicom(
    rows: int,
    cols: int,
    bits: int = 8,
    samples: int = 1,
    frames: int = 1,
    syntax: str = "explicit",
    pixel_bytes: int | None = None,
    rescale: bool = False,
) -> bytes:
    """A DICOM Secondary Capture declaring ``rows x cols x frames`` at ``bits``; ``syntax`` is
    ``explicit``, ``deflate`` or ``rle`` (one tiny encapsulated frame); ``pixel_bytes`` stored
    bytes (default: what the header declares, when that is small)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        RLELossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    uid = {"explicit": ExplicitVRLittleEndian, "deflate": DeflatedExplicitVRLittleEndian}
    uid = uid.get(syntax, RLELossless)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else (16 if bits <= 16 else 32)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    declared = rows * cols * frames * samples * ds.BitsAllocated // 8
    if syntax == "rle":
        ds.PixelData = encapsulate([b"\0" * 64] * min(frames, 64))
    else:
        n = declared if pixel_bytes is None and declared <= 2**22 else (pixel_bytes or 64)
        ds.PixelData = bytes(n + (n & 1))
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


# ---- NIfTI ----------------------------------------------------------------------------------
def nifti(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: str = "uint8",
    gz: bool = True,
    data_bytes: int | None = None,
) -> bytes:
    """A NIfTI-1 declaring ``shape`` with voxel ``spacing``; ``data_bytes`` of data follow the
    header (default: the whole volume when it is at most 16 MiB, else 1 KiB)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.dtype(dtype))
    header.set_qform(np.eye(4), code=1)
    header["pixdim"][1:4] = spacing  # written raw: NaN, 0 and 1e6 included
    head = io.BytesIO()
    header.write_to(head)
    raw = head.getvalue() + b"\0" * (352 - len(head.getvalue()))
    declared = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    n = data_bytes if data_bytes is not None else (declared if declared <= 2**24 else 1024)
    data = raw + bytes(n)
    return gzip.compress(data, 1) if gz else data


# ---- PNG / JPEG -----------------------------------------------------------------------------
def png(
    width: int, height: int, bit_depth: int = 8, color_type: int = 0, idat: int = 1024
) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(b"\0" * idat, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (16, 16), 0).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    return bytes(data)


# ---- the regression corpus: each reported or found case, with the error it must give ----------
SERVE_CAP = 4096 * 4096  # the service's default pixel limit


def _planar_float_tiff():
    """Issue 24: a (3, 2500, 7000) float32 planar page was counted as 3 x 2500 pixels and
    decoded to ~1.4 GB from a 300 KB body."""
    page = TiffPage(7000, 2500, 3, 32, 3, planar=2, rows_per_strip=500, compression=8)
    return tiff([page]), _opts(SERVE_CAP), _too_large()


def _nifti_spacing_at_cap():
    """Issue 24: a volume at exactly the voxel cap with spacing (1, 99, 1) was resampled to a
    99x larger slice after the voxel check."""
    return nifti((512, 512, 1), (1.0, 99.0, 1.0)), _opts(512 * 512), _too_large()


def _nifti_spacing_small_volume():
    """The aspect resample alone past the budget: a 256 x 256 slice with rows 99x coarser."""
    return nifti((256, 256, 1), (1.0, 99.0, 1.0)), _opts(400_000), _too_large()


def _slide_single_top_tile():
    """Issue 24: a pyramidal TIFF whose 1024^2 level is one 8192^2 tile: the tifffile reader
    decoded whole tiles of any declared size (432 MB peak under a 1 Mpx cap)."""
    data = pyramid(4096, 4096, 256, levels=3, top_tile=8192, max_deflate=2**28)
    return data, _opts(1 << 20), _too_large()


def _tiny_tiff_huge_tile():
    """A 100 x 100 TIFF declaring 8192^2 tiles: Pillow's libtiff would allocate the tile."""
    page = TiffPage(100, 100, 3, tile=(8192, 8192), compression=8)
    return tiff([page]), _opts(1_000_000), _too_large()


def _opts(cap: int):
    from biomedclip.imaging import ReadOptions

    return ReadOptions(max_pixels=cap)


def _too_large():
    from biomedclip.errors import ImageTooLargeError

    return ImageTooLargeError


def _openslide_mixed_tiles():
    """Found by fuzzing: OpenSlide 4 dies with SIGFPE opening this pyramid (8192 px tiles, a
    1024 px tile level); such TIFFs now go to the tifffile reader and its budget."""
    from biomedclip.errors import ImageError

    return (
        pyramid(2**20, 2**20, 8192, levels=3, compression=1, top_tile=1024),
        _opts(1 << 20),
        ImageError,
    )


def _dicom_two_billion_frames():
    """Found by fuzzing: ``frames="all"`` on a header declaring 2**31 - 1 frames listed every
    index before any size check (tens of GB)."""
    from biomedclip.imaging import ReadOptions

    data = dicom(8, 8, frames=2**31 - 1, pixel_bytes=64)
    return data, ReadOptions(max_pixels=1 << 20, frames="all"), _too_large()


CORPUS = {
    "openslide_sigfpe_mixed_tile_sizes": _openslide_mixed_tiles,
    "dicom_all_of_2e31_frames": _dicom_two_billion_frames,
    "planar_float_tiff_7000x2500": _planar_float_tiff,
    "nifti_spacing_1_99_1_at_cap": _nifti_spacing_at_cap,
    "nifti_spacing_resample_past_budget": _nifti_spacing_small_volume,
    "slide_1024_level_one_8192_tile": _slide_single_top_tile,
    "tiff_100px_declaring_8192_tiles": _tiny_tiff_huge_tile,
}
