"""NIfTI volumes built here with a known anatomy-to-voxel mapping."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from biomedclip.errors import ImageDecodeError, ImageTooLargeError
from biomedclip.imaging import detect_format, read_image
from biomedclip.imaging.nifti import slice_indices
from tests.imaging.test_windowing import linear_reference

X, Y, Z = 40, 50, 30  # RAS voxel grid: x -> patient's right, y -> anterior, z -> superior


def ras_volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 100, size=(X, Y, Z)).astype(np.float32)
    v[35, 45, 14] = 1000.0  # right, anterior, on the middle axial slice (index 14)
    v[5, 3, 14] = 800.0  # left, posterior
    v[20, 25, 28] = 900.0  # superior, mid-line (for the coronal / sagittal views)
    return v


def save(volume: np.ndarray, affine: np.ndarray, path) -> None:
    nib.save(nib.Nifti1Image(volume, affine), str(path))


@pytest.fixture
def ras_path(tmp_path):
    path = tmp_path / "ras.nii"
    save(ras_volume(), np.eye(4), path)
    return path


def test_axial_radiological_convention(ras_path):
    rec = read_image(ras_path, mode=None, window=(500, 1000))
    a = np.asarray(rec.images[0])
    assert a.shape == (Y, X) and rec.item(0) == {"plane": "axial", "slice": 14}
    # patient's right-anterior marker is top-left; left-posterior is bottom-right
    assert np.unravel_index(a.argmax(), a.shape) == (Y - 1 - 45, X - 1 - 35)
    assert a[Y - 1 - 3, X - 1 - 5] == round(linear_reference(800.0, 500, 1000))
    expected = np.vectorize(lambda v: linear_reference(float(v), 500, 1000))(
        np.flip(ras_volume()[:, :, 14].T, axis=(0, 1))
    )
    np.testing.assert_array_equal(a, np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def test_non_canonical_storage_gives_the_same_images(tmp_path, ras_path):
    v = ras_volume()
    # LPS storage: i runs to the patient's left, j posterior; world position stays the same
    lps = v[::-1, ::-1, :].copy()
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])
    aff[:3, 3] = [X - 1, Y - 1, 0]
    save(lps, aff, tmp_path / "lps.nii")
    # axes permuted: stored as [z, x, y]
    perm = np.transpose(v, (2, 0, 1)).copy()
    aff2 = np.zeros((4, 4))
    aff2[0, 1] = aff2[1, 2] = aff2[2, 0] = aff2[3, 3] = 1.0
    save(perm, aff2, tmp_path / "perm.nii")
    for plane in ("axial", "coronal", "sagittal"):
        ref = read_image(ras_path, mode=None, plane=plane)
        for other in ("lps.nii", "perm.nii"):
            got = read_image(tmp_path / other, mode=None, plane=plane)
            assert got.images[0].tobytes() == ref.images[0].tobytes(), (plane, other)
    assert read_image(tmp_path / "lps.nii").metadata["orientation"] == "LPS"


def test_coronal_sagittal_orientation(ras_path):
    cor = read_image(ras_path, mode=None, plane="coronal", slices=1, window=(500, 1000))
    a = np.asarray(cor.images[0])
    assert a.shape == (Z, X) and cor.item(0)["slice"] == slice_indices(Y, 1)[0] == 24
    v = ras_volume()
    v24 = np.flip(v[:, 24, :].T, axis=(0, 1))
    np.testing.assert_array_equal(
        a, np.clip(np.rint(np.vectorize(lambda x: linear_reference(x, 500, 1000))(v24)), 0, 255)
    )
    sag = np.asarray(
        read_image(ras_path, mode=None, plane="sagittal", window=(500, 1000)).images[0]
    )
    assert sag.shape == (Z, Y)
    # the superior mid-line marker (x=20 is the middle sagittal slice: index 20 of 0..39)
    assert slice_indices(X, 1) == [20]
    assert np.unravel_index(sag.argmax(), sag.shape) == (Z - 1 - 28, Y - 1 - 25)


def test_several_slices_and_anisotropic_voxels(tmp_path):
    v = ras_volume()
    path = tmp_path / "aniso.nii.gz"
    save(v, np.diag([1.0, 1.0, 3.0, 1.0]), path)  # 3 mm slices
    rec = read_image(path, slices=3)
    assert [it["slice"] for it in rec.metadata["items"]] == [7, 14, 22] == slice_indices(Z, 3)
    assert rec.images[0].size == (X, Y)  # axial in-plane voxels are square
    cor = read_image(path, plane="coronal")
    assert cor.images[0].size == (X, 3 * Z)  # stretched to the true aspect ratio
    assert rec.metadata["zooms"] == [1.0, 1.0, 3.0]


def test_gzip_bytes_misnamed_4d_and_errors(tmp_path, ras_path):
    ref = read_image(ras_path).images[0].tobytes()
    gz = tmp_path / "volume.bin"
    gz.write_bytes(gzip.compress(ras_path.read_bytes()))
    assert detect_format(gz) == "nifti"
    assert read_image(gz).images[0].tobytes() == ref
    assert read_image(ras_path.read_bytes()).images[0].tobytes() == ref
    v4 = np.stack([ras_volume(), np.zeros((X, Y, Z), np.float32)], axis=-1)
    save(v4, np.eye(4), tmp_path / "v4.nii")
    assert read_image(tmp_path / "v4.nii").images[0].tobytes() == ref
    with pytest.raises(ImageTooLargeError, match="ras.nii"):
        read_image(ras_path, max_pixels=X * Y * Z - 1)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(ras_path.read_bytes()[:2000])
    with pytest.raises(ImageDecodeError, match="cut.nii"):
        read_image(cut)


def test_gzip_bomb_refused_from_the_header(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 4096))
    hdr.set_data_dtype(np.float32)
    head = hdr.binaryblock + b"\x00" * 4
    bomb = tmp_path / "bomb.bin"  # a misnamed .nii.gz whose data would inflate to 256 GiB
    bomb.write_bytes(gzip.compress(head + b"\x00" * 1_000_000))
    assert detect_format(bomb) == "nifti"
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        read_image(bomb)
