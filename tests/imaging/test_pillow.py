"""Pillow formats on real images: orientation, 16-bit, alpha, palette, CMYK, pages, bad files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from biomedclip.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from biomedclip.imaging import detect_format, load_image, read_image
from tests.conftest import shared_path
from tests.imaging.helpers import save_rotated_jpeg, skimage_file
from tests.imaging.test_windowing import linear_reference


def large_jpeg(side: int) -> Path:
    """The first SLAKE JPEG of ``side`` x ``side`` pixels."""
    for path in sorted(shared_path("slake", "imgs").glob("*/source.jpg")):
        with Image.open(path) as im:
            if im.size == (side, side):
                return path
    raise AssertionError(f"no {side}px SLAKE image")


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
    path = save_rotated_jpeg(src, tmp_path / "rotated.jpg", quality=95)
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


def test_draft_decodes_large_jpegs_at_a_reduced_dct_scale(tmp_path):
    """``draft``: the smallest DCT scale that keeps both sides >= the size; only for JPEGs."""
    from biomedclip.errors import InputError
    from biomedclip.imaging import ReadOptions

    real = large_jpeg(1024)  # a real 1024 x 1024 SLAKE scan
    with Image.open(real) as im:
        plain = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    exact = read_image(real, ReadOptions())
    assert "draft_scale" not in exact.item(0)
    np.testing.assert_array_equal(np.asarray(exact.images[0]), plain)  # default: every pixel
    fast = read_image(real, ReadOptions(draft=224))
    assert fast.images[0].size == (256, 256) and fast.item(0)["draft_scale"] == 4
    down = np.asarray(Image.fromarray(plain).resize((256, 256), Image.Resampling.BOX), float)
    assert np.abs(np.asarray(fast.images[0], float) - down).mean() < 3  # the same picture
    assert read_image(real, ReadOptions(draft=100)).images[0].size == (128, 128)  # 1/8
    assert read_image(real, ReadOptions(draft=300)).images[0].size == (512, 512)  # 1/2
    # the rotation is applied after the scaled decode: 700x420 stored, 6 = rotate -> 210x350
    rotated = save_rotated_jpeg(Image.fromarray(plain).resize((700, 420)), tmp_path / "r.jpg")
    assert read_image(rotated, ReadOptions(draft=200)).images[0].size == (210, 350)
    # not a JPEG, or too small to scale: decoded in full
    png = tmp_path / "same.png"
    Image.fromarray(plain).save(png)
    assert read_image(png, ReadOptions(draft=224)).images[0].size == (1024, 1024)
    small = tmp_path / "small.jpg"
    Image.fromarray(plain).resize((300, 300)).save(small)
    rec = read_image(small, ReadOptions(draft=224))
    assert rec.images[0].size == (300, 300) and "draft_scale" not in rec.item(0)
    with pytest.raises(InputError, match="draft"):
        ReadOptions(draft=0)
