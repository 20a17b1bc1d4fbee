"""Pillow formats on real images: orientation, 16-bit, alpha, palette, CMYK, pages, bad files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from biomedclip.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from biomedclip.imaging import detect_format, load_image, read_image
from tests.conftest import shared_path
from tests.imaging.helpers import skimage_file
from tests.imaging.test_windowing import linear_reference


def lc25000_jpegs(n: int = 3):
    d = shared_path("lc25000_lung")
    return sorted(d.rglob("*.jpeg"))[:n] + sorted(d.rglob("*.jpg"))[:n]


def test_parity_with_plain_pillow_on_real_jpegs(example_images):
    """mode=None is exactly Image.open + exif_transpose (what the reference preprocess sees)."""
    for path in list(example_images) + lc25000_jpegs():
        with Image.open(path) as im:
            ref = ImageOps.exif_transpose(im)
        ours = load_image(path, mode=None)
        assert ours.mode == ref.mode and ours.size == ref.size, path
        assert ours.tobytes() == ref.tobytes(), path
        assert load_image(path).mode == "RGB"
        assert load_image(path.read_bytes(), mode=None).tobytes() == ref.tobytes()


def test_exif_orientation_applied(tmp_path):
    src = Image.open(skimage_file("rocket.jpg")).convert("RGB")  # 640 x 427
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    path = tmp_path / "rotated.jpg"
    src.save(path, exif=exif, quality=95)
    with Image.open(path) as stored:
        expected = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    got = load_image(path)
    assert got.size == (427, 640)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_16_bit_png_windowed_not_white(tmp_path):
    cam = np.asarray(Image.open(skimage_file("camera.png")).convert("L")).astype(np.uint16)
    values = cam * 200 + 1000  # a 16-bit image whose values all exceed 255
    path = tmp_path / "cam16.png"
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        assert np.asarray(im.convert("RGB")).mean() > 250  # the reference's white square
    got = np.asarray(load_image(path, mode=None))
    lo, hi = np.percentile(values, [0.5, 99.5])
    ref = np.clip(np.rint((values - lo) / (hi - lo) * 255), 0, 255)
    assert np.abs(got.astype(int) - ref).max() <= 1
    assert np.corrcoef(got.ravel(), cam.ravel())[0, 1] > 0.99
    c, w = 20000.0, 30000.0
    win = np.asarray(read_image(path, mode=None, window=(c, w)).images[0])
    ref = np.vectorize(lambda x: linear_reference(float(x), c, w))(values)
    np.testing.assert_array_equal(win, np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_float_planar_multipage_tiff_via_tifffile():
    rec = read_image(skimage_file("multipage_rgb.tif"), frames="all")
    assert len(rec.images) == 2 and rec.images[0].size == (10, 10)
    assert rec.metadata["codec"] == "TIFF (tifffile)"
    pages = read_image(skimage_file("multipage.tif"), frames="all", mode=None)
    with Image.open(skimage_file("multipage.tif")) as im:
        im.seek(1)
        assert pages.images[1].tobytes() == im.tobytes()
    assert read_image(skimage_file("multipage.tif"), frames="middle").item(0)["frame"] == 0


def test_alpha_palette_cmyk(tmp_path):
    horse = skimage_file("horse.png")
    assert load_image(horse, mode=None).mode == "RGBA"
    rgba = np.asarray(Image.open(horse).convert("RGBA")).astype(np.float64)
    white = np.asarray(read_image(horse, background=(255, 255, 255)).images[0]).astype(int)
    a = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * a + 255 * (1 - a)
    assert np.abs(white - expected).max() <= 1
    gif = load_image(skimage_file("no_time_for_that_tiny.gif"), mode=None)
    assert gif.mode == "P" and load_image(skimage_file("no_time_for_that_tiny.gif")).mode == "RGB"
    cmyk_path = tmp_path / "cmyk.jpg"
    Image.open(skimage_file("rocket.jpg")).convert("CMYK").save(cmyk_path, quality=95)
    assert load_image(cmyk_path, mode=None).mode == "CMYK"
    with Image.open(cmyk_path) as im:
        np.testing.assert_array_equal(
            np.asarray(load_image(cmyk_path)), np.asarray(im.convert("RGB"))
        )


def test_skimage_bundled_images_open():
    for name in ("ihc.png", "retina.jpg", "microaneurysms.png", "cell.png"):
        rec = read_image(skimage_file(name))
        assert rec.metadata["format"] == "pillow" and rec.images[0].mode == "RGB"
        assert detect_format(skimage_file(name)) == "pillow"


def _png_with_size(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.open(skimage_file("microaneurysms.png")).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_bad_inputs_give_typed_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n" * 10)
    with pytest.raises(UnsupportedFormatError, match="notes.png"):
        load_image(text)
    jpeg = skimage_file("retina.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 3])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        load_image(truncated)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_with_size(60_000, 60_000))
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        load_image(bomb)
    with pytest.raises(ImageTooLargeError):
        load_image(skimage_file("retina.jpg"), max_pixels=1000)
    misnamed = tmp_path / "really_a_png.dcm"
    misnamed.write_bytes(skimage_file("cell.png").read_bytes())
    assert detect_format(misnamed) == "pillow"
    assert load_image(misnamed).size == load_image(skimage_file("cell.png")).size
