"""Bounded fuzzing: mutated real files must give an ImageError subclass or images, nothing else.

Seeds are real files (pydicom's test DICOMs incl. compressed ones, JPEG from the shared data, PNG /
GIF / TIFF from skimage, a NIfTI volume, a pyramidal slide). Hypothesis is derandomised so CI is
reproducible; the example count keeps the whole module under about a minute on 2 cores.
"""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from biomedclip.errors import ImageError
from biomedclip.imaging import ReadOptions, read_image
from tests.conftest import SHARED
from tests.imaging.helpers import dicom_file, skimage_file, write_pyramid

# CI default keeps the module near a minute; raise it (and set BIOMEDCLIP_FUZZ_RANDOM=1 for fresh
# random inputs each run) for a longer local campaign.
EXAMPLES = int(os.environ.get("BIOMEDCLIP_FUZZ_EXAMPLES", "400"))
DERANDOMIZE = os.environ.get("BIOMEDCLIP_FUZZ_RANDOM") != "1"

DICOM_SEEDS = [
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEG2000.dcm",
    "image_dfl.dcm",
    "examples_palette.dcm",
    "rtplan.dcm",
]


def _nifti_seed() -> bytes:
    import nibabel as nib

    vol = np.random.default_rng(0).normal(size=(16, 12, 10)).astype(np.float32)
    return gzip.compress(nib.Nifti1Image(vol, np.eye(4)).to_bytes())


def _slide_seed(tmp_dir) -> bytes:
    ihc = np.asarray(Image.open(skimage_file("ihc.png")).convert("RGB"))[:256, :256]
    path = tmp_dir / "seed.svs"
    write_pyramid(path, np.ascontiguousarray(ihc), levels=2, tile=64)
    return path.read_bytes()


def _seeds(tmp_dir) -> dict[str, bytes]:
    seeds = {name: dicom_file(name).read_bytes() for name in DICOM_SEEDS}
    jpeg = SHARED / "lc25000_lung" / "lung_aca" / "lungaca1.jpeg"
    if jpeg.is_file():
        seeds["lungaca1.jpeg"] = jpeg.read_bytes()
    buf = io.BytesIO()
    Image.open(skimage_file("microaneurysms.png")).save(buf, format="PNG")
    seeds["microaneurysms.png"] = buf.getvalue()
    seeds["multipage.tif"] = skimage_file("multipage.tif").read_bytes()
    seeds["tiny.gif"] = skimage_file("no_time_for_that_tiny.gif").read_bytes()
    seeds["volume.nii.gz"] = _nifti_seed()
    seeds["slide.svs"] = _slide_seed(tmp_dir)
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seeds(tmp_path_factory.mktemp("fuzz"))


BIG = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x01\x00"]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("big"), st.floats(0, 1), st.sampled_from(BIG)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(b"")),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, where, arg in ops:
        if not buf:
            break
        # bias positions toward headers, where the length fields live
        pos = int((where**2) * (len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= arg
        elif kind in ("overwrite", "big"):
            buf[pos : pos + len(arg)] = arg
        elif kind == "truncate":
            del buf[max(pos, 1) :]
        else:
            buf[pos:pos] = arg
    return bytes(buf)


# A 16 Mpx limit keeps memory bounded when a mutated header declares a huge image (the limit,
# not the default, is what the fuzzing exercises: refusal must be an ImageTooLargeError).
OPTIONS = [
    ReadOptions(max_pixels=16_000_000),
    ReadOptions(mode=None, frames="all", window="lung", slices=3, max_pixels=16_000_000),
    ReadOptions(plane="sagittal", max_tiles=4, tile_size=32, max_pixels=4_000_000),
]


def check(source, options: ReadOptions) -> None:
    try:
        rec = read_image(source, options)
    except ImageError:
        return
    assert rec.images and all(isinstance(im, Image.Image) for im in rec.images)
    for im in rec.images:
        im.tobytes()  # fully decoded


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "seed_name",
    DICOM_SEEDS
    + [
        "lungaca1.jpeg",
        "microaneurysms.png",
        "multipage.tif",
        "tiny.gif",
        "volume.nii.gz",
        "slide.svs",
    ],
)
def test_mutated_real_files_raise_only_image_errors(seeds, seed_name, tmp_path):
    if seed_name not in seeds:
        pytest.skip(f"{seed_name} not available")
    original = seeds[seed_name]
    for options in OPTIONS:  # the unmutated seed reads or fails cleanly
        check(original, options)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        ops=st.lists(mutation, min_size=1, max_size=4),
        which=st.integers(0, len(OPTIONS) - 1),
        as_file=st.booleans(),
    )
    def fuzz(ops, which, as_file):
        data = mutate(original, ops)
        if as_file and data:  # through a path too: extension hints, OpenSlide on files
            path = tmp_path / seed_name
            path.write_bytes(data)
            check(path, OPTIONS[which])
        else:
            check(data, OPTIONS[which])

    fuzz()
