"""Windowing against the DICOM PS3.3 C.11.2.1.2 formulas written out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biomedclip.errors import InputError
from biomedclip.imaging.windowing import (
    PRESETS,
    Window,
    apply_window,
    parse_window,
    percentile_window,
    window_to_uint8,
)


def linear_reference(x: float, c: float, w: float, ymin: float = 0.0, ymax: float = 255.0):
    """PS3.3 C.11.2.1.2.1, scalar pseudo-code as printed in the standard."""
    if x <= c - 0.5 - (w - 1) / 2:
        return ymin
    if x > c - 0.5 + (w - 1) / 2:
        return ymax
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin


def linear_reference_np(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """The same C.11.2.1.2.1 formula over an array, rounded to uint8 (checked against the scalar)."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def test_array_reference_equals_scalar_reference():
    xs = np.linspace(-3000, 3000, 4001)
    for c, w in ((40, 400), (-600, 1500), (15000, 30000)):
        scalar = np.array([round(linear_reference(float(x), c, w)) for x in xs])
        np.testing.assert_array_equal(linear_reference_np(xs, c, w), scalar)


def linear_exact_reference(x, c, w, ymin=0.0, ymax=255.0):
    """PS3.3 C.11.2.1.3.2."""
    if x <= c - w / 2:
        return ymin
    if x > c + w / 2:
        return ymax
    return ((x - c) / w + 0.5) * (ymax - ymin) + ymin


def sigmoid_reference(x, c, w, ymax=255.0):
    """PS3.3 C.11.2.1.3.1."""
    return ymax / (1 + math.exp(-4 * (x - c) / w))


@pytest.mark.parametrize("c,w", [(40, 400), (-600, 1500), (600, 1600), (0.5, 2), (127.5, 256)])
def test_linear_matches_standard(c, w):
    xs = np.linspace(c - w, c + w, 997)
    ours = apply_window(xs, Window(c, w))
    ref = [linear_reference(float(x), c, w) for x in xs]
    np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize(
    "fn,ref", [("LINEAR_EXACT", linear_exact_reference), ("SIGMOID", sigmoid_reference)]
)
def test_other_voi_functions(fn, ref):
    c, w = 50.0, 350.0
    xs = np.linspace(-500, 500, 501)
    ours = apply_window(xs, Window(c, w, fn))
    np.testing.assert_allclose(ours, [ref(float(x), c, w) for x in xs], atol=1e-9)


def test_presets_and_parsing():
    assert parse_window("lung") == Window(-600.0, 1500.0, source="preset:lung")
    assert set(PRESETS) >= {"lung", "mediastinum", "bone", "brain", "abdomen"}
    w = parse_window("40, 400")
    assert (w.center, w.width, w.source) == (40.0, 400.0, "user")
    assert parse_window((10, 20)).width == 20.0
    assert parse_window(None) is None
    for bad in ("nope", "1,2,3", "a,b", "40,0", (1, float("nan"))):
        with pytest.raises(InputError):
            parse_window(bad)


def test_uint8_rounding_and_percentiles():
    x = np.arange(-1000, 1001, dtype=np.float64)
    out = window_to_uint8(x, Window(0, 201))
    assert out.dtype == np.uint8 and out[0] == 0 and out[-1] == 255
    assert out[1000] == round(linear_reference(0, 0, 201))
    pw = percentile_window(x, 1, 99)
    lo, hi = np.percentile(x, [1, 99])
    assert pw.center == pytest.approx((lo + hi) / 2) and pw.width == pytest.approx(hi - lo)
    flat = percentile_window(np.full(10, 7.0))
    assert np.all(window_to_uint8(np.full(10, 7.0), flat) == 128)
