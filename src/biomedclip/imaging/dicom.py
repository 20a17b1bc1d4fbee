"""DICOM through pydicom (+ pylibjpeg, openjpeg and RLE plugins).

Grayscale pipeline, per DICOM PS3.3: stored values -> modality LUT (rescale slope/intercept or
Modality LUT Sequence) -> VOI (a user window/preset, else the VOI LUT Sequence, else the file's
window centre/width with its VOI LUT Function, else percentiles) -> MONOCHROME1 inversion -> 8-bit.
Colour: YBR is converted to RGB by pydicom, PALETTE COLOR through its LUT, >8-bit samples scaled.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.errors import (
    ImageDecodeError,
    ImageDependencyError,
    ImageError,
    ImageTooLargeError,
    MissingPixelDataError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)
from biomedclip.imaging.budget import BYTES_PER_PIXEL, DecodeBudget, mode_bytes
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.pillow import frame_indices
from biomedclip.imaging.source import FATAL, Source
from biomedclip.imaging.windowing import (
    PERCENTILE_BYTES_PER_VALUE,
    WINDOW_FUNCTIONS,
    Window,
    percentile_window,
    to_uint8,
    window_to_uint8,
)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued element as float (None when absent/invalid)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        f = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return f if np.isfinite(f) else None


def _functional_group_item(ds, frame: int, sequence: str):
    """The item of ``sequence`` for ``frame`` in an enhanced (multi-frame) object, if any."""
    for groups, idx in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        seq = ds.get(groups)
        if seq is not None and len(seq) > idx:
            inner = seq[idx].get(sequence)
            if inner is not None and len(inner):
                return inner[0]
    return None


def _file_window(ds, frame: int) -> Window | None:
    item = _functional_group_item(ds, frame, "FrameVOILUTSequence") or ds
    c, w = _first(item.get("WindowCenter")), _first(item.get("WindowWidth"))
    if c is None or w is None or w <= 0:
        return None
    func = str(item.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if func not in WINDOW_FUNCTIONS:
        func = "LINEAR"
    if func == "LINEAR" and w < 1:
        return None
    return Window(c, w, func, source="file")


def _modality(ds, arr: np.ndarray, frame: int) -> tuple[np.ndarray, bool]:
    """Apply the modality LUT; returns (values, whether anything was applied)."""
    from pydicom.pixels import apply_modality_lut

    item = _functional_group_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        slope = _first(item.get("RescaleSlope")) or 1.0
        inter = _first(item.get("RescaleIntercept")) or 0.0
        return arr.astype(np.float64) * slope + inter, True
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        out = apply_modality_lut(arr, ds)
        return out, True
    return arr, False


def _voi_lut_to_float(ds, arr: np.ndarray) -> np.ndarray | None:
    """Apply the first VOI LUT Sequence item; output scaled to [0, 255]."""
    from pydicom.pixels import apply_voi

    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    desc = seq[0].get("LUTDescriptor")
    try:
        bits = int(desc[2])
    except (TypeError, ValueError, IndexError):
        return None
    out = apply_voi(arr, ds, index=0).astype(np.float64)
    top = float(2**bits - 1) if 1 <= bits <= 16 else float(np.max(out) or 1.0)
    return out / top * 255.0


def _grayscale(
    ds, raw: np.ndarray, frame: int, options: ReadOptions, budget: DecodeBudget
) -> tuple[np.ndarray, dict]:
    with budget.hold(raw.size * 8, "apply the modality LUT"):
        values, modality_applied = _modality(ds, raw, frame)
        info: dict = {"modality_lut": modality_applied}
        user = options.window_obj
        win = user
        if user is None and "VOILUTSequence" in ds:
            with budget.hold(raw.size * 16, "apply the VOI LUT"):
                display = _voi_lut_to_float(ds, values)
                if display is not None:
                    info["window"] = {"source": "file-voi-lut"}
                    budget.ask(raw.size, "window to 8 bits")
                    out = to_uint8(display)
                    del display
                    return _invert(ds, out, info)
        if win is None:
            win = _file_window(ds, frame)
        if win is None:
            bits = int(ds.get("BitsStored", 8) or 8)
            if bits <= 8 and not modality_applied and values.dtype == np.uint8:
                top = float(2 ** max(bits, 1) - 1)  # e.g. 0..255, or 0..1 for a binary SEG
                win = Window(top / 2, top, "LINEAR_EXACT", source="stored-range")
            else:
                with budget.hold(raw.size * PERCENTILE_BYTES_PER_VALUE, "percentile window"):
                    win = percentile_window(values, *options.percentiles)
        info["window"] = win.as_dict()
        budget.ask(raw.size, "window to 8 bits")
        return _invert(ds, window_to_uint8(values, win), info)


def _invert(ds, out: np.ndarray, info: dict) -> tuple[np.ndarray, dict]:
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        np.subtract(255, out, out=out)
        info["inverted"] = True
    return out, info


def _color(ds, arr: np.ndarray, photometric: str) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits = 16 if arr.dtype.itemsize > 1 else 8
    else:
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8) or 8)
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    top = float(2**bits - 1) if 1 <= bits <= 32 else float(arr.max() or 1.0)
    return to_uint8(arr / top * 255.0)


def _check_decodable(ds, name: str) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:  # raw dataset without meta: use the encoding it was read with
        implicit, little = getattr(ds, "original_encoding", (True, True))
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

        ts = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        ds.file_meta.TransferSyntaxUID = ts
    ts = UID(str(ts))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise UnsupportedTransferSyntaxError(
            f"pixel data transfer syntax {ts.name or ts} ({ts}) cannot be decoded", name
        ) from e
    if not decoder.is_available:  # the server's installation lacks a plugin: not the file's fault
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise ImageDependencyError(
            f"pixel data transfer syntax {ts.name} ({ts}) needs {missing}", name
        )


# Lossless codecs rarely beat 20:1 and lossy ones 200:1 on medical images; a header that declares
# far more pixels than its compressed data could hold is a decompression bomb (or a corrupt file).
MAX_COMPRESSION_RATIO = 2000


def _check_ratio(ds, pixels: int, name: str) -> None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None or not getattr(ts, "is_encapsulated", False):
        return  # native data: pydicom checks the length itself
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 8) or 8)
    declared = pixels * spp * max(bits, 8) // 8
    stored = len(ds.PixelData or b"")
    if declared > MAX_COMPRESSION_RATIO * max(stored, 1):
        raise ImageTooLargeError(
            f"header declares {declared} bytes of pixels for {stored} bytes of compressed data "
            f"(more than {MAX_COMPRESSION_RATIO}:1): refusing a likely decompression bomb",
            name,
        )


INFLATE_SLACK = 2**20  # headers, overlays, private tags


def _inflate(data: bytes, budget: DecodeBudget, name: str) -> bytes:
    """Raw-deflate ``data``, asking the budget for what it inflates (a deflate bomb is refused
    before its output exists past what the budget has left)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    left = budget.left
    if left is not None:  # a dataset's bytes: at most 8 per allowed pixel (64-bit samples)
        left = min(left, budget.max_bytes // BYTES_PER_PIXEL * 8 + INFLATE_SLACK)
    try:
        out = d.decompress(data, 0 if left is None else left + 1)
    except zlib.error as e:
        raise ImageDecodeError(f"corrupt deflated DICOM dataset ({e})", name) from e
    if left is not None and (len(out) > left or d.unconsumed_tail):
        raise ImageTooLargeError(
            f"deflated DICOM dataset inflates beyond the {left} bytes the decode budget has left "
            f"({len(data)} bytes compressed): refusing a likely decompression bomb",
            name,
        )
    budget.ask(len(out), "inflate the deflated DICOM dataset")
    return out


def _read_dataset(src: Source, force: bool, budget: DecodeBudget, name: str):
    """``dcmread``, but the file meta first: a Deflated Explicit VR Little Endian dataset is
    inflated through a byte-capped stream instead of pydicom's unbounded ``zlib.decompress``."""
    import pydicom
    from pydicom.dataset import FileDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with src.open() as fp:
        preamble = read_preamble(fp, force)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            fp.seek(0)
            return pydicom.dcmread(fp, force=force)
        inflated = _inflate(fp.read(), budget, name)
    body = read_dataset(DicomBytesIO(inflated), False, True)
    ds = FileDataset(name, body, preamble, meta, False, True)
    ds.set_original_encoding(False, True, body._character_set)
    return ds


def _frame_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG / JPEG-LS / JPEG 2000 codestream declares, None if unknown."""
    if frame[:2] == b"\xff\xd8":  # JPEG family: walk the markers to the SOFn segment
        i = 2
        while i + 9 <= len(frame):
            if frame[i] != 0xFF:
                return None
            marker = frame[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(frame[i + 2 : i + 4], "big")
            if marker in SOF_MARKERS:
                h = int.from_bytes(frame[i + 5 : i + 7], "big")
                w = int.from_bytes(frame[i + 7 : i + 9], "big")
                return w, h
            i += 2 + length
        return None
    at = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # J2K codestream (raw or in a JP2 box)
    if at >= 0 and at + 24 <= len(frame):
        siz = frame[at + 4 :]
        xs, ys = int.from_bytes(siz[4:8], "big"), int.from_bytes(siz[8:12], "big")
        xo, yo = int.from_bytes(siz[12:16], "big"), int.from_bytes(siz[16:20], "big")
        return max(xs - xo, 0), max(ys - yo, 0)
    return None


# SOF0-3, 5-7, 9-11, 13-15 and JPEG-LS SOF55
SOF_MARKERS = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7})


def _check_frames(ds, indices: list[int], n: int, rows: int, cols: int, name: str) -> None:
    """Compressed frames must not declare more pixels than the header (checked before decode)."""
    from pydicom.encaps import get_frame

    for i in indices:
        try:
            frame = get_frame(ds.PixelData, i, number_of_frames=n)
        except Exception:  # noqa: BLE001 - the decoder reports a broken encapsulation itself
            return
        size = _frame_size(frame[:65536])
        if size is not None and size[0] * size[1] > rows * cols:
            raise ImageTooLargeError(
                f"compressed frame {i} declares {size[0]}x{size[1]} pixels, the header "
                f"{cols}x{rows}: refusing to decode",
                name,
            )


def frame_bytes(ds, rows: int, cols: int) -> int:
    """Bytes pydicom allocates to decode one frame: rows x cols x samples x BitsAllocated."""
    spp = max(int(ds.get("SamplesPerPixel", 1) or 1), 1)
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if "FloatPixelData" in ds:
        bits = 32
    elif "DoubleFloatPixelData" in ds:
        bits = 64
    return rows * cols * spp * max((bits + 7) // 8, 1)


def read_dicom(
    src: Source,
    options: ReadOptions,
    *,
    force: bool = False,
    budget: DecodeBudget | None = None,
) -> ImageRecord:
    import pydicom
    from pydicom.pixels import pixel_array

    name = src.name
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read_dataset(src, force, budget, name)
            if not any(k in ds for k in PIXEL_KEYWORDS):
                kind = ds.get("Modality") or ds.get("SOPClassUID", "")
                raise MissingPixelDataError(
                    f"DICOM file has no pixel data{f' ({kind})' if kind else ''}", name
                )
            if ds.get("Rows") is None or ds.get("Columns") is None:
                raise ImageDecodeError("DICOM pixel data without Rows/Columns", name)
            rows, cols = int(ds.Rows), int(ds.Columns)
            if rows <= 0 or cols <= 0:
                raise ImageDecodeError(f"invalid image size {cols}x{rows}", name)
            n = int(ds.get("NumberOfFrames", 1) or 1)
            if n < 1:
                raise ImageDecodeError(f"invalid NumberOfFrames {n}", name)
            indices = frame_indices(n, options.frames, default="middle")
            pixels = rows * cols * len(indices)
            if options.max_pixels and pixels > options.max_pixels:
                raise ImageTooLargeError(
                    f"{cols}x{rows} x {len(indices)} frame(s) exceeds the pixel limit of "
                    f"{options.max_pixels}",
                    name,
                )
            if "PixelData" in ds:
                _check_decodable(ds, name)
                _check_ratio(ds, rows * cols * n, name)
                if ds.file_meta.TransferSyntaxUID.is_encapsulated:
                    _check_frames(ds, indices, n, rows, cols, name)
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper().strip()
            images, items = [], []
            per_frame = frame_bytes(ds, rows, cols)
            encapsulated = "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_encapsulated
            for i in indices:
                # the decoded frame, and the codec's own output buffer for compressed frames
                held = budget.ask(per_frame, f"decode frame {i} ({cols}x{rows})")
                with budget.hold(per_frame if encapsulated else 0, "run the frame's codec"):
                    arr = pixel_array(ds, index=i if n > 1 else None)
                if arr.ndim == 3 and n == 1 and arr.shape[-1] not in (3, 4):
                    arr = arr[0]
                if arr.ndim == 3 and arr.shape[-1] in (3, 4) or photometric == "PALETTE COLOR":
                    with budget.hold(rows * cols * 3 * 8, "convert colour samples"):
                        rgb = np.ascontiguousarray(_color(ds, arr, photometric)[..., :3])
                    budget.image(cols, rows, 4, "make an RGB image")
                    img, info = Image.fromarray(rgb, "RGB"), {}
                elif arr.ndim == 2:
                    gray, info = _grayscale(ds, arr, i, options, budget)
                    budget.image(cols, rows, 1, "make an 8-bit image")
                    img = Image.fromarray(gray, "L")
                else:
                    raise ImageDecodeError(f"unexpected pixel array shape {arr.shape}", name)
                del arr
                budget.release(held)
                if options.mode is not None and img.mode != options.mode:
                    budget.image(cols, rows, mode_bytes(options.mode), f"convert to {options.mode}")
                    img = img.convert(options.mode)
                images.append(img)
                items.append({"frame": i, **info})
            ts = ds.file_meta.get("TransferSyntaxUID")
            meta = {
                "format": "dicom",
                "source": name,
                "modality": str(ds.get("Modality", "")),
                "photometric": photometric,
                "rows": rows,
                "columns": cols,
                "n_frames": n,
                "bits_stored": ds.get("BitsStored"),
                "transfer_syntax": getattr(ts, "name", str(ts)) if ts else None,
                "items": items,
            }
            return ImageRecord(images, meta)
    except ImageError as e:
        if e.path is None:
            raise type(e)(str(e), name) from e
        raise
    except pydicom.errors.InvalidDicomError as e:
        raise UnsupportedFormatError(f"not a DICOM file ({e})", name) from e
    except FATAL:
        raise
    except BaseException as e:  # corrupt files raise anything from deep inside pydicom / codecs
        raise ImageDecodeError(f"cannot decode DICOM ({type(e).__name__}: {e})", name) from e
