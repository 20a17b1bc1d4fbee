"""Keep the thread's alternate signal stack across OpenVINO calls (Linux).

OpenVINO's CPU plugin (2026.4) installs its own ``sigaltstack`` when it compiles a model and puts
back the one it found when that compiled model is destroyed. Destroyed in another order than
created (two towers, NNCF's calibration models), the last restore installs a stack that was already
freed; the next signal with an ``SA_ONSTACK`` handler (SIGCHLD from a DataLoader worker, SIGINT,
SIGALRM: Python installs every handler so) then kills the process with SIGSEGV. Measured here: an
OpenVINO export, then ``embed --workers 1`` in the same process, died at the first worker fork.

:func:`keep_sigaltstack` puts the caller's stack back after the call, so every compiled model
records the process's own stack and any destruction order restores a valid one.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Iterator


class _StackT(ctypes.Structure):  # Linux's stack_t
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


SS_DISABLE = 2


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def current() -> tuple[int, int, int] | None:
    """This thread's alternate signal stack as ``(address, size, flags)``; None off Linux."""
    if _LIBC is None:
        return None
    old = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(old)) != 0:
        return None
    return (old.ss_sp or 0, old.ss_size, old.ss_flags)


def _install(state: tuple[int, int, int]) -> None:
    sp, size, flags = state
    new = _StackT(None, SS_DISABLE, 0) if flags & SS_DISABLE else _StackT(sp, 0, size)
    _LIBC.sigaltstack(ctypes.byref(new), None)


@contextlib.contextmanager
def keep_sigaltstack(collect: bool = False) -> Iterator[None]:
    """Run the block, then put this thread's alternate signal stack back as it was. With
    ``collect``, garbage is collected first, so temporary compiled models the block made (NNCF
    calibration) are destroyed while the guard still holds."""
    before = current()
    try:
        yield
    finally:
        if collect:
            gc.collect()
        if before is not None and current() != before:
            _install(before)
