"""Structure-aware fuzzing: generated headers at and past the limits, for every format.

Each case is a valid header (TIFF / BigTIFF with planar, tiled, multi-page and float layouts;
PNG; JPEG; DICOM native, deflated and RLE; NIfTI raw and gzipped with any spacing; pyramidal
slides through OpenSlide and through tifffile) whose declared sizes, tile sizes, bit depths,
frame counts and spacings are drawn around and beyond the pixel limit. Every case goes through
``read_image`` and through the service's resolver, and must
- give images or an ``ImageError`` (nothing else), and
- keep the peak traced memory within the decode budget plus a fixed allowance.

``BIOMEDCLIP_FUZZ_EXAMPLES`` raises the example count per format (CI: 200);
``BIOMEDCLIP_FUZZ_RANDOM=1`` draws fresh cases instead of the reproducible ones.
"""

from __future__ import annotations

import base64
import os
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from biomedclip.errors import ImageError, InputError
from biomedclip.imaging import ReadOptions, read_image
from biomedclip.imaging.budget import ALLOWANCE_BYTES, DecodeBudget
from tests.imaging import hostile as H

EXAMPLES = int(os.environ.get("BIOMEDCLIP_FUZZ_EXAMPLES", "200"))
DERANDOMIZE = os.environ.get("BIOMEDCLIP_FUZZ_RANDOM") != "1"
CAP = 1024 * 1024  # the pixel limit under test: a 24 MiB decode budget

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# sizes around the limit (1024^2) and far past it, and small ones
DIMS = st.one_of(
    st.sampled_from([1, 2, 16, 255, 1023, 1024, 1025, 2500, 4096, 7000, 65535, 2**31 - 1]),
    st.integers(1, 3000),
)
TILES = st.sampled_from([16, 64, 256, 1024, 4096, 8192, 65536])


def _read(data: bytes, options: ReadOptions) -> None:
    try:
        rec = read_image(data, options)
    except ImageError:
        return
    assert rec.images and all(isinstance(im, Image.Image) for im in rec.images)


def _resolve(uri: str, cap: int) -> None:
    from biomedclip.serve.inputs import ImageResolver

    try:
        im = ImageResolver(None, cap).image(uri)
    except (ImageError, InputError):
        return
    assert isinstance(im, Image.Image)


def bounded(data: bytes, options: ReadOptions | None = None) -> None:
    """Read ``data`` both ways; the traced peak of each stays under budget + allowance."""
    options = options or ReadOptions(max_pixels=CAP)
    cap = options.max_pixels
    limit = DecodeBudget.for_pixels(cap).max_bytes + ALLOWANCE_BYTES
    # the request body is in memory before the resolver runs (the payload limit bounds it)
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    for run in (lambda: _read(data, options), lambda: _resolve(uri, cap)):
        tracemalloc.start()
        try:
            run()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= limit, f"peak {peak / 2**20:.1f} MiB over {limit / 2**20:.1f} MiB"


tiff_page = st.builds(
    H.TiffPage,
    width=DIMS,
    height=DIMS,
    samples=st.sampled_from([1, 3, 4]),
    bits=st.sampled_from([8, 16, 32]),
    sample_format=st.sampled_from([1, 1, 3]),
    planar=st.sampled_from([1, 2]),
    tile=st.one_of(st.none(), st.tuples(TILES, TILES)),
    rows_per_strip=st.one_of(st.none(), DIMS),
    compression=st.sampled_from([1, 8]),
)


@FUZZ
@given(
    pages=st.lists(tiff_page, min_size=1, max_size=3),
    bigtiff=st.booleans(),
    frames=st.sampled_from([None, "all", "middle"]),
)
def test_tiff_headers(pages, bigtiff, frames):
    data = H.tiff(pages, bigtiff=bigtiff)
    bounded(data, ReadOptions(max_pixels=CAP, frames=frames))


@FUZZ
@given(
    width=DIMS,
    height=DIMS,
    depth=st.sampled_from([1, 2, 4, 8, 16]),
    color=st.sampled_from([0, 2, 3, 4, 6]),
    idat=st.sampled_from([0, 16, 4096, 2**20]),
)
def test_png_headers(width, height, depth, color, idat):
    bounded(H.png(width, height, depth, color, idat))


@FUZZ
@given(width=DIMS, height=DIMS, mode=st.sampled_from(["L", "RGB", "CMYK"]))
def test_jpeg_headers(width, height, mode):
    bounded(H.jpeg(width, height, mode))


@FUZZ
@given(
    rows=DIMS,
    cols=DIMS,
    bits=st.sampled_from([1, 8, 12, 16, 32]),
    samples=st.sampled_from([1, 3]),
    frames=st.sampled_from([1, 2, 3, 64, 2**31 - 1]),
    syntax=st.sampled_from(["explicit", "deflate", "rle"]),
    rescale=st.booleans(),
    which=st.sampled_from([None, "all", "middle"]),
)
def test_dicom_headers(rows, cols, bits, samples, frames, syntax, rescale, which):
    rows, cols = min(rows, 65535), min(cols, 65535)  # DICOM Rows/Columns are 16-bit
    data = H.dicom(rows, cols, bits, samples, frames, syntax, rescale=rescale)
    bounded(data, ReadOptions(max_pixels=CAP, frames=which))


SPACING = st.sampled_from([0.0, 0.01, 0.5, 1.0, 3.0, 99.0, 1e6, float("nan"), float("inf")])


@FUZZ
@given(
    shape=st.tuples(DIMS, DIMS, DIMS).map(lambda s: tuple(min(v, 32767) for v in s)),
    spacing=st.tuples(SPACING, SPACING, SPACING),
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64"]),
    gz=st.booleans(),
    plane=st.sampled_from(["axial", "coronal", "sagittal"]),
    slices=st.sampled_from([1, 3, 1000]),
)
def test_nifti_headers(shape, spacing, dtype, gz, plane, slices):
    data = H.nifti(shape, spacing, dtype, gz)
    bounded(data, ReadOptions(max_pixels=CAP, plane=plane, slices=slices))


@FUZZ
@given(
    width=st.sampled_from([256, 1000, 2048, 4096, 100_000, 2**20]),
    height=st.sampled_from([256, 1000, 2048, 4096, 100_000, 2**20]),
    tile=st.sampled_from([16, 64, 256, 1024, 8192]),
    levels=st.integers(1, 4),
    compression=st.sampled_from([1, 8]),
    top_tile=st.one_of(st.none(), st.sampled_from([1024, 8192, 65536])),
    openslide=st.booleans(),
)
def test_slide_headers(width, height, tile, levels, compression, top_tile, openslide):
    import biomedclip.imaging.wsi as wsi

    data = H.pyramid(width, height, tile, levels, compression, top_tile)
    options = ReadOptions(max_pixels=CAP, max_tiles=4, tile_size=32)
    if openslide:
        bounded(data, options)
        return
    real = wsi.openslide_module
    wsi.openslide_module = lambda: None  # the tifffile reader (no OpenSlide installed)
    try:
        bounded(data, options)
    finally:
        wsi.openslide_module = real


@pytest.mark.parametrize("name", sorted(H.CORPUS))
def test_regression_corpus(name):
    """Every case the fuzzing found (and the issue's reports) stays refused within bounds."""
    data, options, expect = H.CORPUS[name]()
    bounded(data, options)
    with pytest.raises(expect):
        read_image(data, options)
