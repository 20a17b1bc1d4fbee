"""DICOM on pydicom's real test files: values checked against independent computations."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from biomedclip.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    MissingPixelDataError,
    UnsupportedTransferSyntaxError,
)
from biomedclip.imaging import detect_format, load_image, read_image
from tests.imaging.helpers import dicom_file
from tests.imaging.test_windowing import linear_reference_np


def expected_linear(values: np.ndarray, c: float, w: float) -> np.ndarray:
    return linear_reference_np(values, c, w)


def stored(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(dicom_file(name))
    return ds, ds.pixel_array


def test_ct_lung_preset_is_hu_windowed():
    ds, raw = stored("CT_small.dcm")
    hu = raw.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rec = read_image(dicom_file("CT_small.dcm"), mode=None, window="lung")
    assert rec.images[0].mode == "L" and rec.images[0].size == (128, 128)
    np.testing.assert_array_equal(np.asarray(rec.images[0]), expected_linear(hu, -600, 1500))
    assert rec.metadata["modality"] == "CT" and rec.item(0)["window"]["source"] == "preset:lung"
    # custom C,W and RGB output: three equal channels
    rgb = read_image(dicom_file("CT_small.dcm"), window="40,400").images[0]
    a = np.asarray(rgb)
    assert rgb.mode == "RGB" and (a[..., 0] == a[..., 2]).all()
    np.testing.assert_array_equal(a[..., 1], expected_linear(hu, 40, 400))


def test_ct_without_stored_window_uses_percentiles_not_white():
    ds, raw = stored("CT_small.dcm")
    assert "WindowCenter" not in ds
    a = np.asarray(read_image(dicom_file("CT_small.dcm"), mode=None).images[0])
    hu = raw.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = np.percentile(hu, [0.5, 99.5])
    ref = np.clip(np.rint((hu - lo) / (hi - lo) * 255), 0, 255)
    assert np.abs(a.astype(int) - ref).max() <= 1
    assert a.std() > 40  # a real picture, not the reference's white square


def test_mr_file_window():
    ds, raw = stored("MR_small.dcm")
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    a = np.asarray(load_image(dicom_file("MR_small.dcm"), mode=None))
    np.testing.assert_array_equal(a, expected_linear(raw.astype(np.float64), c, w))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_expb.dcm",
    ],
)
def test_lossless_transfer_syntaxes_decode_identically(name):
    ref = np.asarray(load_image(dicom_file("MR_small.dcm"), mode=None))
    got = np.asarray(load_image(dicom_file(name), mode=None))
    np.testing.assert_array_equal(got, ref)


def test_jpeg_baseline_ybr_close_to_lossless_rgb():
    lossless = np.asarray(load_image(dicom_file("SC_rgb_rle.dcm"))).astype(int)
    for name in ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_gdcm_KY.dcm"):
        got = np.asarray(load_image(dicom_file(name))).astype(int)
        assert got.shape == lossless.shape
        assert np.abs(got - lossless).mean() < 3, name  # lossy JPEG vs the same image lossless
    y = np.asarray(load_image(dicom_file("SC_ybr_full_422_uncompressed.dcm"))).astype(int)
    assert np.abs(y - lossless).mean() < 3


def test_16_and_32_bit_rgb_scaled_to_8_bit():
    ref = np.asarray(load_image(dicom_file("SC_rgb_rle.dcm"))).astype(int)
    for name in ("SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"):
        got = np.asarray(load_image(dicom_file(name))).astype(int)
        assert np.abs(got - ref).max() <= 1, name


def test_multiframe_middle_all_and_index():
    path = dicom_file("examples_ybr_color.dcm")  # 30-frame ultrasound, JPEG baseline YBR_FULL_422
    ds = pydicom.dcmread(path)
    from pydicom.pixels import pixel_array

    rec = read_image(path)
    assert rec.metadata["n_frames"] == 30 and rec.item(0)["frame"] == 14
    np.testing.assert_array_equal(np.asarray(rec.images[0]), pixel_array(ds, index=14))
    all_frames = read_image(path, frames="all")
    assert len(all_frames.images) == 30 and all_frames.describe(3) == "frame 3"
    np.testing.assert_array_equal(np.asarray(all_frames.images[7]), pixel_array(ds, index=7))
    np.testing.assert_array_equal(
        np.asarray(read_image(path, frames=7).images[0]), np.asarray(all_frames.images[7])
    )
    with pytest.raises(ImageError, match="frame 30"):
        read_image(path, frames=30)
    two = read_image(dicom_file("SC_rgb_rle_2frame.dcm"), frames="all")
    assert len(two.images) == 2 and two.images[0].tobytes() != two.images[1].tobytes()


def test_multiframe_grayscale_from_pydicom_data():
    path = dicom_file("emri_small.dcm")  # 10 frames MR (pydicom-data)
    rec = read_image(path, frames="all", mode=None)
    assert len(rec.images) == 10
    compressed = read_image(dicom_file("emri_small_RLE.dcm"), frames="all", mode=None)
    for a, b in zip(rec.images, compressed.images):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_monochrome1_inverted(tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = tmp_path / "ct_mono1.dcm"
    ds.save_as(mono1)
    normal = np.asarray(read_image(dicom_file("CT_small.dcm"), window="lung", mode=None).images[0])
    rec = read_image(mono1, window="lung", mode=None)
    np.testing.assert_array_equal(np.asarray(rec.images[0]), 255 - normal)
    assert rec.item(0)["inverted"] is True


def test_real_monochrome1_cr():
    path = dicom_file("RG3_J2KI.dcm")  # CR, MONOCHROME1, JPEG 2000 (pydicom-data)
    ds = pydicom.dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    got = np.asarray(read_image(path, mode=None).images[0])
    np.testing.assert_array_equal(got, 255 - expected_linear(ds.pixel_array.astype(float), c, w))


def test_voi_lut_sequence():
    path = dicom_file("vlut_04.dcm")  # pydicom-data
    ds = pydicom.dcmread(path)
    item = ds.VOILUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=np.float64)
    idx = np.clip(ds.pixel_array.astype(int) - first, 0, len(lut) - 1)
    expected = np.clip(np.rint(lut[idx] / (2**bits - 1) * 255), 0, 255)
    got = np.asarray(read_image(path, mode=None).images[0])
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


def test_modality_lut_sequence():
    path = dicom_file("mlut_18.dcm")  # pydicom-data
    ds = pydicom.dcmread(path)
    item = ds.ModalityLUTSequence[0]
    n, first, _ = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=np.float64)
    values = lut[np.clip(ds.pixel_array.astype(int) - first, 0, n - 1)]
    got = np.asarray(read_image(path, mode=None, window=(2048, 4096)).images[0])
    np.testing.assert_array_equal(got, expected_linear(values, 2048, 4096))


def test_palette_color():
    path = dicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    red = np.asarray(ds.RedPaletteColorLookupTableData)
    desc = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
    lut_r = np.frombuffer(red, dtype="<u2") if desc[2] == 16 else np.frombuffer(red, np.uint8)
    idx = np.clip(ds.pixel_array.astype(int) - desc[1], 0, len(lut_r) - 1)
    expected_r = np.rint(lut_r[idx] / (65535 if desc[2] == 16 else 255) * 255)
    got = np.asarray(read_image(path).images[0])
    assert got.shape == (350, 800, 3)
    np.testing.assert_array_equal(got[..., 0], expected_r.astype(np.uint8))


def test_errors_are_typed_and_name_the_file(tmp_path):
    with pytest.raises(MissingPixelDataError, match="rtplan.dcm"):
        read_image(dicom_file("rtplan.dcm"))
    with pytest.raises(ImageDecodeError, match="MR_truncated"):
        read_image(dicom_file("MR_truncated.dcm"))
    ds = pydicom.dcmread(dicom_file("MR_small_RLE.dcm"))  # encapsulated pixel data
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder exists
    mpeg = tmp_path / "mpeg2.dcm"
    ds.save_as(mpeg, enforce_file_format=False)
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        read_image(mpeg)
    with pytest.raises(ImageTooLargeError):
        read_image(dicom_file("CT_small.dcm"), max_pixels=128 * 127)


def test_content_sniffing_not_extension(tmp_path):
    misnamed = tmp_path / "scan.png"
    shutil.copy(dicom_file("CT_small.dcm"), misnamed)
    assert detect_format(misnamed) == "dicom"
    ref = np.asarray(load_image(dicom_file("CT_small.dcm")))
    np.testing.assert_array_equal(np.asarray(load_image(misnamed)), ref)
    np.testing.assert_array_equal(
        np.asarray(load_image(dicom_file("CT_small.dcm").read_bytes())), ref
    )
    # a DICOM stream without preamble and file meta is found through its .dcm extension
    data = dicom_file("MR_small.dcm").read_bytes()
    assert data[128:132] == b"DICM"
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, explicit VR LE
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(data[144 + group_length :])
    assert detect_format(raw) == "dicom"
    np.testing.assert_array_equal(
        np.asarray(load_image(raw, mode=None)),
        np.asarray(load_image(dicom_file("MR_small.dcm"), mode=None)),
    )


def test_compressed_header_declaring_a_huge_image_is_refused(tmp_path):
    ds = pydicom.dcmread(dicom_file("MR_small_RLE.dcm"))  # ~7 kB of RLE data for 64x64
    ds.Rows = ds.Columns = 8192  # 128 MB declared: a decompression bomb, refused before decoding
    bomb = tmp_path / "bomb.dcm"
    ds.save_as(bomb)
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        read_image(bomb)
