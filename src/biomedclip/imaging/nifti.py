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
from biomedclip.imaging.budget import DecodeBudget, mode_bytes
from biomedclip.imaging.options import ImageRecord, ReadOptions
from biomedclip.imaging.source import Source, decoder_errors
from biomedclip.imaging.windowing import (
    PERCENTILE_BYTES_PER_VALUE,
    percentile_window,
    window_to_uint8,
)

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


def _header_of(head: bytes):
    import nibabel as nib

    size = int.from_bytes(head[:4], "little")
    if size not in (348, 540):
        size = int.from_bytes(head[:4], "big")
    hdr_cls = nib.Nifti2Header if size == 540 else nib.Nifti1Header
    return hdr_cls.from_fileobj(io.BytesIO(head)), size


def _check_declared(header, max_pixels: int | None, name: str) -> tuple[tuple[int, ...], int]:
    """The declared shape and data bytes, refused past the voxel limit before any read."""
    shape = tuple(int(s) for s in header.get_data_shape())
    voxels = int(np.prod(shape[:3], dtype=object)) if shape else 0
    if max_pixels and voxels > max_pixels:
        raise ImageTooLargeError(f"volume {shape} exceeds the pixel limit of {max_pixels}", name)
    return shape, int(np.prod(shape, dtype=object)) * header.get_data_dtype().itemsize


def _load(src: Source, max_pixels: int | None, budget: DecodeBudget):
    import nibabel as nib

    if src.path is not None and src.suffix in (".nii", ".nii.gz", ".hdr"):
        img = nib.load(str(src.path))
        _check_declared(img.header, max_pixels, src.name)
        return img
    data = src.read_all()
    if data[:2] == b"\x1f\x8b":
        data = _gunzip_declared(data, max_pixels, budget, src.name)
    header, size = _header_of(data[:540])
    _check_declared(header, max_pixels, src.name)
    budget.ask(len(data), "copy the volume bytes into nibabel's stream")
    cls = nib.Nifti2Image if size == 540 else nib.Nifti1Image
    return cls.from_bytes(data)


def _gunzip_declared(data: bytes, max_pixels: int | None, budget: DecodeBudget, name: str) -> bytes:
    """Decompress only as much as the header declares (never a gzip bomb's full output),
    after the decode budget has agreed to the declared bytes."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
        head = gz.read(540)
        header, size = _header_of(head)
        shape, total = _check_declared(header, max_pixels, name)
        want = int(header.get_data_offset() or size + 4) + total
        # the inflated bytes, and their concatenation with the header
        budget.ask(2 * want, f"inflate the gzipped volume {shape}")
        return head + gz.read(max(want - len(head), 0))


def read_nifti(
    src: Source, options: ReadOptions, budget: DecodeBudget | None = None
) -> ImageRecord:
    import nibabel as nib

    name = src.name
    budget = budget or DecodeBudget.for_pixels(options.max_pixels, name)
    with decoder_errors(name, "decode NIfTI"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = _load(src, options.max_pixels, budget)
        shape = tuple(int(s) for s in img.shape)
        if len(shape) < 2 or any(s < 1 for s in shape):
            raise ImageDecodeError(f"invalid volume shape {shape}", name)
        voxels = int(np.prod(shape[:3], dtype=object))
        if options.max_pixels and voxels > options.max_pixels:
            raise ImageTooLargeError(
                f"volume {shape} exceeds the pixel limit of {options.max_pixels}", name
            )
        itemsize = img.header.get_data_dtype().itemsize
        # the stored data of the first volume (a file is read, bytes are viewed), its float32
        # copy, and the canonical reorientation's copy of it
        budget.ask(voxels * itemsize, f"read the volume {shape[:3]}")
        budget.ask(voxels * 4, "convert the volume to float32")
        if tuple(nib.aff2axcodes(img.affine)) != ("R", "A", "S"):
            budget.ask(voxels * itemsize, "reorient the volume to RAS")
        if len(shape) == 2:
            img = nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine, img.header)
        elif len(shape) > 3:  # 4-D+: first volume
            img = img.slicer[..., 0] if len(shape) == 4 else img.slicer[..., 0, 0]
        canon = nib.as_closest_canonical(img)
        volume = np.asarray(canon.get_fdata(dtype=np.float32))
        while volume.ndim > 3:
            volume = volume[..., 0]
        zooms = [abs(float(z)) or 1.0 for z in canon.header.get_zooms()[:3]]
        window = options.window_obj
        if window is None:
            with budget.hold(volume.size * PERCENTILE_BYTES_PER_VALUE, "compute percentile window"):
                window = percentile_window(volume, *options.percentiles)
        axis = AXIS[options.plane]
        indices = slice_indices(volume.shape[axis], options.slices)
        in_plane = [zooms[a] for a in range(3) if a != axis]  # (cols spacing, rows spacing)
        images, items = [], []
        for k in indices:
            plane = orient_slice(volume, options.plane, k)
            rows, cols = plane.shape
            budget.image(cols, rows, 1, "window a slice")
            im = Image.fromarray(np.ascontiguousarray(window_to_uint8(plane, window)), "L")
            size = aspect_size(cols, rows, col_spacing=in_plane[0], row_spacing=in_plane[1])
            if size != (cols, rows):
                budget.image(*size, 1, f"resample the slice to {size[0]}x{size[1]} (voxel aspect)")
                im = im.resize(size, Image.Resampling.BILINEAR)
            if options.mode is not None:
                budget.image(*im.size, mode_bytes(options.mode), f"convert to {options.mode}")
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


def aspect_size(w: int, h: int, col_spacing: float, row_spacing: float) -> tuple[int, int]:
    """The slice size at square pixels in millimetres (upsampling the coarser axis); ``(w, h)``
    when the spacings are equal, not finite, or more than 100:1 apart."""
    if not (np.isfinite(col_spacing) and np.isfinite(row_spacing)) or col_spacing <= 0:
        return w, h
    ratio = row_spacing / col_spacing
    if abs(ratio - 1.0) < 0.01 or not 0.01 < ratio < 100:
        return w, h
    return (w, max(1, round(h * ratio))) if ratio > 1 else (max(1, round(w / ratio)), h)
