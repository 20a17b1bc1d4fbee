"""The decode budget: the one object every image reader asks before it allocates.

The contract (docs/architecture.md, "Imaging"):

1. A reader computes, from the header alone, the bytes each step is about to allocate: the
   decode itself (a frame, a tile, a volume, an inflated stream), and every step after it
   (resampling, mode conversion, windowing, tiling).
2. It asks the input's :class:`DecodeBudget` *before* allocating (:meth:`DecodeBudget.ask`, or
   :meth:`DecodeBudget.array` for a NumPy shape and dtype). The budget refuses with
   :class:`~biomedclip.errors.ImageTooLargeError` (413 in the service) naming the input, the
   step and the sizes.
3. Bytes stay reserved while the step's result is alive; a reader gives back what it freed
   (:meth:`DecodeBudget.release`, or :meth:`DecodeBudget.hold` for a transient step).

So the live bytes of one read never exceed ``max_bytes`` plus a fixed allowance for codec state
and headers; no reader allocates from a header value the budget has not seen. The budget is
derived from ``ReadOptions.max_pixels``: ``BYTES_PER_PIXEL`` bytes per allowed pixel, enough for a
16-bit frame, its float64 modality values and percentile copy, and the 8-bit
result alive at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

from biomedclip.errors import ImageTooLargeError

BYTES_PER_PIXEL = 24
# Headers, codec state, small per-call buffers: what a read may use beyond the budget.
ALLOWANCE_BYTES = 32 * 2**20


def nbytes_of(shape: Sequence[int], itemsize: int) -> int:
    """Bytes of an array of ``shape`` and ``itemsize``: exact Python integers (no overflow)."""
    n = int(itemsize)
    for s in shape:
        s = int(s)
        if s < 0:
            raise ValueError(f"negative dimension {s} in {tuple(shape)}")
        n *= s
    return n


def _human(n: int) -> str:
    if n < 2**20:
        return f"{n} B"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


class DecodeBudget:
    """Bytes one input may hold while it is decoded; ``max_bytes=None`` means unbounded."""

    def __init__(self, max_bytes: int | None, name: str = "<input>"):
        self.max_bytes = max_bytes
        self.name = name
        self.used = 0
        self.peak = 0
        self.steps: list[tuple[str, int]] = []  # every request, for tests and error messages

    @classmethod
    def for_pixels(cls, max_pixels: int | None, name: str = "<input>") -> DecodeBudget:
        """The budget for ``max_pixels`` allowed pixels (``ReadOptions.max_pixels``)."""
        return cls(None if not max_pixels else int(max_pixels) * BYTES_PER_PIXEL, name)

    @property
    def left(self) -> int | None:
        return None if self.max_bytes is None else self.max_bytes - self.used

    def ask(self, nbytes: int, what: str) -> int:
        """Reserve ``nbytes`` for the step ``what`` or refuse before anything is allocated."""
        if not isinstance(nbytes, int):
            if not math.isfinite(nbytes):
                raise ImageTooLargeError(
                    f"{what}: the header declares a non-finite size", self.name
                )
            nbytes = math.ceil(nbytes)
        if nbytes < 0:
            raise ImageTooLargeError(f"{what}: the header declares a negative size", self.name)
        self.steps.append((what, nbytes))
        if self.max_bytes is not None and self.used + nbytes > self.max_bytes:
            held = f", {_human(self.used)} already held" if self.used else ""
            raise ImageTooLargeError(
                f"{what} would allocate {_human(nbytes)}{held}: over the decode budget of "
                f"{_human(self.max_bytes)} (the pixel limit x {BYTES_PER_PIXEL} bytes)",
                self.name,
            )
        self.used += nbytes
        self.peak = max(self.peak, self.used)
        return nbytes

    def array(self, shape: Sequence[int], itemsize: int, what: str) -> int:
        """:meth:`ask` for an array of ``shape`` with ``itemsize`` bytes per element."""
        try:
            n = nbytes_of(shape, itemsize)
        except ValueError as e:
            raise ImageTooLargeError(f"{what}: {e}", self.name) from e
        return self.ask(n, what)

    def image(self, width: int, height: int, channels: int, what: str, itemsize: int = 1) -> int:
        """:meth:`ask` for a ``width`` x ``height`` image of ``channels`` samples."""
        return self.array((height, width, channels), itemsize, what)

    def release(self, nbytes: int) -> None:
        """Give back bytes whose step result was freed."""
        self.used = max(self.used - int(nbytes), 0)

    @contextlib.contextmanager
    def hold(self, nbytes: int, what: str) -> Iterator[int]:
        """Reserve ``nbytes`` for a transient step; released when the block ends."""
        n = self.ask(nbytes, what)
        try:
            yield n
        finally:
            self.release(n)


def mode_bytes(mode: str | None) -> int:
    """Bytes per pixel Pillow allocates for ``mode``: 1 for ``1``/``L``/``P``, 2 for 16-bit,
    4 for every other mode (Pillow stores RGB, LA, CMYK, I and F in 32-bit pixels)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode is not None and mode.startswith("I;16"):
        return 2
    return 4
