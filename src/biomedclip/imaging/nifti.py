"""NIfTI-1/2 volumes through nibabel: canonical (RAS+) orientation, 2-D slices, windowing.

Slices are shown in radiological convention: axial and coronal with the patient's right on the
image's left, anterior (axial) or superior (coronal, sagittal) at the top; sagittal with anterior
on the left. Non-isotropic voxels are resampled so that the slice has the true aspect ratio.
"""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
from PIL import Image

from biomedclip.errors import ImageDecodeError, ImageTooLargeError
from biomedclip.imaging.options import (
    INFLATE_BYTES_PER_PIXEL,
    ImageRecord,
    ReadOptions,
    inflate_budget,
)
from biomedclip.imaging.source import Source, decoder_errors
from biomedclip.imaging.windowing import apply_window, percentile_window, to_uint8

AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def slice_indices(n: int, count: int) -> list[int]:
    """``count`` evenly spaced indices in ``range(n)`` away from the ends (1 -> the middle)."""
    count = min(count, n)
    pos = np.linspace(0, n - 1, count + 2)[1:-1]
    return sorted({int(round(p)) for p in pos})


def orient_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2-D display array (rows top->bottom, cols left->right) from a RAS+ volume."""
    if plane == "axial":  # [x, y] -> rows: anterior (y high) first; cols: right (x high) first
        s = volume[:, :, index]
    elif plane == "coronal":  # [x, z] -> rows: superior first; cols: right first
        s = volume[:, index, :]
    else:  # sagittal [y, z] -> rows: superior first; cols: anterior (y high) first
        s = volume[index, :, :]
    return np.flip(s.T, axis=(0, 1))


def _load(src: Source, max_pixels: int | None):
    import nibabel as nib

    if src.path is not None and src.suffix in (".nii", ".nii.gz", ".hdr"):
        return nib.load(str(src.path))
    data = src.read_all()
    if data[:2] == b"\x1f\x8b":
        data = _gunzip_declared(data, max_pixels, src.name)
    header_size = int.from_bytes(data[:4], "little")
    if header_size not in (348, 540):
        header_size = int.from_bytes(data[:4], "big")
    cls = nib.Nifti2Image if header_size == 540 else nib.Nifti1Image
    return cls.from_bytes(data)


def _gunzip_declared(data: bytes, max_pixels: int | None, name: str) -> bytes:
    """Decompress only as much as the header declares (never a gzip bomb's full output)."""
    import nibabel as nib

    with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
        head = gz.read(540)
        size = int.from_bytes(head[:4], "little")
        if size not in (348, 540):
            size = int.from_bytes(head[:4], "big")
        hdr_cls = nib.Nifti2Header if size == 540 else nib.Nifti1Header
        header = hdr_cls.from_fileobj(io.BytesIO(head))
        shape = header.get_data_shape()
        voxels = int(np.prod(shape[:3], dtype=np.int64)) if shape else 0
        if max_pixels and voxels > max_pixels:
            raise ImageTooLargeError(
                f"volume {tuple(shape)} exceeds the pixel limit of {max_pixels}", name
            )
        total = int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
        want = int(header.get_data_offset() or size + 4) + total
        budget = inflate_budget(max_pixels)
        if budget is not None and want > budget:  # e.g. a long 4-D series of float64
            raise ImageTooLargeError(
                f"volume {tuple(shape)} ({total} bytes) exceeds the inflate budget of {budget} "
                f"bytes (pixel limit {max_pixels} x {INFLATE_BYTES_PER_PIXEL} bytes)",
                name,
            )
        return head + gz.read(max(want - len(head), 0))


def read_nifti(src: Source, options: ReadOptions) -> ImageRecord:
    import nibabel as nib

    name = src.name
    with decoder_errors(name, "decode NIfTI"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = _load(src, options.max_pixels)
        shape = tuple(int(s) for s in img.shape)
        if len(shape) < 2 or any(s < 1 for s in shape):
            raise ImageDecodeError(f"invalid volume shape {shape}", name)
        voxels = int(np.prod(shape[:3], dtype=np.int64))
        if options.max_pixels and voxels > options.max_pixels:
            raise ImageTooLargeError(
                f"volume {shape} exceeds the pixel limit of {options.max_pixels}", name
            )
        if len(shape) == 2:
            img = nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine, img.header)
        elif len(shape) > 3:  # 4-D+: first volume
            img = img.slicer[..., 0] if len(shape) == 4 else img.slicer[..., 0, 0]
        canon = nib.as_closest_canonical(img)
        volume = np.asarray(canon.get_fdata(dtype=np.float32))
        while volume.ndim > 3:
            volume = volume[..., 0]
        zooms = [abs(float(z)) or 1.0 for z in canon.header.get_zooms()[:3]]
        window = options.window_obj or percentile_window(volume, *options.percentiles)
        axis = AXIS[options.plane]
        indices = slice_indices(volume.shape[axis], options.slices)
        in_plane = [zooms[a] for a in range(3) if a != axis]  # (cols spacing, rows spacing)
        images, items = [], []
        for k in indices:
            arr = to_uint8(apply_window(orient_slice(volume, options.plane, k), window))
            im = Image.fromarray(np.ascontiguousarray(arr), "L")
            im = _fix_aspect(im, col_spacing=in_plane[0], row_spacing=in_plane[1])
            if options.mode is not None:
                im = im.convert(options.mode)
            images.append(im)
            items.append({"plane": options.plane, "slice": k})
        meta = {
            "format": "nifti",
            "source": name,
            "shape": list(shape),
            "orientation": "".join(nib.aff2axcodes(img.affine)),
            "canonical": "RAS",
            "zooms": zooms,
            "window": window.as_dict(),
            "n_slices": volume.shape[axis],
            "items": items,
        }
        return ImageRecord(images, meta)


def _fix_aspect(im: Image.Image, col_spacing: float, row_spacing: float) -> Image.Image:
    """Resample so that one pixel is square in millimetres (upsampling the coarser axis)."""
    if not (np.isfinite(col_spacing) and np.isfinite(row_spacing)):
        return im
    ratio = row_spacing / col_spacing
    if abs(ratio - 1.0) < 0.01 or not 0.01 < ratio < 100:
        return im
    w, h = im.size
    size = (w, max(1, round(h * ratio))) if ratio > 1 else (max(1, round(w / ratio)), h)
    return im.resize(size, Image.Resampling.BILINEAR)
