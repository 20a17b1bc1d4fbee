"""Intensity windowing: high-bit-depth values -> 8-bit display values.

The linear function is DICOM PS3.3 C.11.2.1.2.1 (``LINEAR``), with ``LINEAR_EXACT`` (C.11.2.1.3.2)
and ``SIGMOID`` (C.11.2.1.3.1); outputs are floats in [0, 255] that :func:`to_uint8` rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomedclip.errors import InputError
from biomedclip.imaging.constants import PRESETS as PRESETS  # re-exported
from biomedclip.imaging.constants import WINDOW_FUNCTIONS as WINDOW_FUNCTIONS


@dataclass(frozen=True)
class Window:
    """A window centre/width; ``source`` says where it came from (preset, file, user, ...)."""

    center: float
    width: float
    function: str = "LINEAR"
    source: str = "user"

    def as_dict(self) -> dict:
        return {
            "center": self.center,
            "width": self.width,
            "function": self.function,
            "source": self.source,
        }


def parse_window(spec: str | tuple[float, float] | Window | None) -> Window | None:
    """A preset name (``lung``, ``bone``, ...), ``"C,W"``, a ``(C, W)`` pair, or ``None``."""
    if spec is None or isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in PRESETS:
            c, w = PRESETS[key]
            return Window(c, w, source=f"preset:{key}")
        parts = key.split(",")
        if len(parts) != 2:
            raise InputError(
                f"window {spec!r}: use a preset ({', '.join(PRESETS)}) or CENTER,WIDTH"
            )
        try:
            c, w = float(parts[0]), float(parts[1])
        except ValueError as e:
            raise InputError(f"window {spec!r}: CENTER,WIDTH must be numbers") from e
    else:
        try:
            c, w = (float(v) for v in spec)
        except (TypeError, ValueError) as e:
            raise InputError(f"window {spec!r}: expected (center, width)") from e
    if not (np.isfinite(c) and np.isfinite(w)) or w < 1:
        raise InputError(f"window {spec!r}: width must be >= 1 and values finite")
    return Window(c, w, source="user")


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map values through ``window`` to floats in [0, 255]."""
    x = np.asarray(values, dtype=np.float64)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / max(w, 1e-12), -700, 700)))
    if window.function == "LINEAR_EXACT":
        w = max(w, 1e-12)
        return np.clip((x - (c - w / 2)) / w, 0.0, 1.0) * 255.0
    # LINEAR (C.11.2.1.2.1): width >= 1
    w = max(w, 1.0)
    if w == 1.0:  # the formula's limit: a threshold at c - 0.5
        return np.where(x <= c - 0.5, 0.0, 255.0)
    y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
    y = np.where(x <= c - 0.5 - (w - 1.0) / 2.0, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1.0) / 2.0, 255.0, y)
    return np.clip(y, 0.0, 255.0)


def percentile_window(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> Window:
    """A LINEAR_EXACT window spanning the ``low``..``high`` percentiles of the finite values.

    Works on one float64 copy of the values, partitioned in place (8 bytes a value, plus a
    1-byte mask for float input): :data:`PERCENTILE_BYTES_PER_VALUE` is what a reader asks the
    decode budget for.
    """
    x = np.array(values, dtype=np.float64).ravel()
    if values.dtype.kind not in "uib":  # integers are always finite: no mask, no second copy
        finite = np.isfinite(x)
        if not finite.all():
            x = x[finite]
        del finite
    if x.size == 0:
        return Window(0.0, 1.0, "LINEAR_EXACT", source="percentiles")
    lo, hi = np.percentile(x, [low, high], overwrite_input=True)
    if hi <= lo:  # flat image: fall back to the full range
        lo, hi = float(x.min()), float(x.max())
    width = float(hi - lo) if hi > lo else 1.0
    return Window(
        float(lo + hi) / 2.0 if hi > lo else float(lo),
        width,
        "LINEAR_EXACT",
        source=f"percentiles:{low:g}-{high:g}",
    )


# What the windowing steps cost per value, for the decode budget: percentile_window's copy
# (+ mask), and window_to_uint8's uint8 output (its float temporaries are per block of rows).
PERCENTILE_BYTES_PER_VALUE = 9 + 8
WINDOW_BLOCK_VALUES = 1 << 16  # float64 temporaries of a block: ~2 MiB


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Round display floats in [0, 255] to uint8 (NaN -> 0)."""
    y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def window_to_uint8(values: np.ndarray, window: Window) -> np.ndarray:
    """``to_uint8(apply_window(values, window))`` a block of rows at a time: the float
    temporaries stay within ``WINDOW_BLOCK_VALUES`` values, the output is 1 byte a value."""
    values = np.asarray(values)
    if values.ndim == 0 or values.size <= WINDOW_BLOCK_VALUES:
        return to_uint8(apply_window(values, window))
    out = np.empty(values.shape, np.uint8)
    row = max(values[0].size, 1)
    step = max(WINDOW_BLOCK_VALUES // row, 1)
    for i in range(0, values.shape[0], step):
        out[i : i + step] = to_uint8(apply_window(values[i : i + step], window))
    return out
