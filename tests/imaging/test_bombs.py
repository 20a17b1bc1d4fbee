"""Decompression bombs are refused before they are expanded (tracemalloc peak stays small)."""

from __future__ import annotations

import tracemalloc

import pytest
from benchmarks import _bombs as bombs

from biomedclip.errors import ImageTooLargeError
from biomedclip.imaging import read_image

CAP = 10_000  # pixels


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


@pytest.fixture(scope="module")
def dicom_bomb() -> bytes:
    return bombs.deflated_dicom_bomb(300 * 2**20)


CASES = {
    "nifti-gz-3d": lambda: bombs.nifti_gz_bomb(),
    "nifti-gz-4d": lambda: bombs.nifti_gz_bomb(shape=(100, 100, 1, 30000)),
    "jpeg-in-dicom": lambda: bombs.jpeg_dicom_lying_about_size(),
    "png": lambda: bombs.png_declaring(60_000, 60_000),
    "jpeg": lambda: bombs.jpeg_declaring(60_000, 60_000),
    "tiff": lambda: bombs.tiff_declaring(60_000, 60_000),
}


def test_deflated_dicom_bomb_is_refused_while_inflating(dicom_bomb):
    assert len(dicom_bomb) < 400_000  # ~306 KB on the wire, 300 MiB inflated

    def read():
        with pytest.raises(ImageTooLargeError, match="inflates beyond"):
            read_image(dicom_bomb, max_pixels=CAP)

    assert _peak_mib(read) < 16


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bombs_are_refused_before_decoding(kind):
    data = CASES[kind]()
    assert len(data) < 2**20

    def read():
        with pytest.raises(ImageTooLargeError):
            read_image(data, max_pixels=CAP)

    assert _peak_mib(read) < 16


def test_deflated_dicom_within_budget_still_reads():
    data = bombs.deflated_dicom_bomb(1000, rows=32, cols=24)
    from biomedclip.imaging.budget import BYTES_PER_PIXEL, DecodeBudget

    budget = DecodeBudget.for_pixels(CAP)
    rec = read_image(data, max_pixels=CAP, budget=budget)
    assert rec.images[0].size == (24, 32) and rec.metadata["format"] == "dicom"
    assert budget.max_bytes == CAP * BYTES_PER_PIXEL and DecodeBudget.for_pixels(None).left is None
    assert any(what.startswith("inflate") for what, _ in budget.steps)
