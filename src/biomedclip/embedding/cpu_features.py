"""What the CPU can do fast: its flags (``/proc/cpuinfo``), model name and kind.

Every CPU-specific decision of the engine reads the flags through :func:`cpu_flags` (tests replace
it with ``monkeypatch``): native bf16 (``amx_bf16`` or ``avx512_bf16``), int8 dot products
(``amx_int8``, ``avx512_vnni``, ``avx_vnni``) and the vector width (``avx512f``, ``avx2``). The
same record goes into provenance (embedding manifests, eval results, ``/v1/models``) and into
every benchmark result.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache

#: The flags that decide a CPU path (and that every record names, present or not).
KEY_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2")
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
INT8_DOT = ("amx_int8", "avx512_vnni", "avx_vnni")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[frozenset[str], str]:
    flags: frozenset[str] = frozenset()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                elif key == "model name" and value.strip():
                    model = value.strip()
                if flags and key == "":  # the first processor is enough
                    break
    except OSError:
        pass
    return flags, model


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` is not readable)."""
    return _cpuinfo()[0]


def cpu_model() -> str:
    return _cpuinfo()[1]


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True with AMX-BF16 or AVX512-BF16: bf16 matmuls in hardware."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16)


def int8_dot(flags: frozenset[str] | None = None) -> bool:
    """True with VNNI or AMX-INT8: int8 dot products without int16 saturation."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in INT8_DOT)


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """``AMX``, ``AVX-512+bf16``, ``AVX-512``, ``AVX2`` or ``other`` (the docs' table rows)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512+bf16"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "other"


def flag_summary(flags: frozenset[str] | None = None) -> str:
    """``amx_bf16=no avx512_bf16=no ... avx2=yes``: for messages that refuse a path."""
    flags = cpu_flags() if flags is None else flags
    return " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in KEY_FLAGS)


def cpu_record() -> dict:
    """Model, kind, the key flags and the core count: provenance and benchmark records."""
    import os

    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "kind": cpu_kind(flags),
        "flags": {f: f in flags for f in KEY_FLAGS},
        "cores": os.cpu_count(),
    }


def cpu_key() -> str:
    """A short digest of the CPU model and key flags: caches of CPU-specific results use it."""
    flags = cpu_flags()
    text = cpu_model() + "|" + ",".join(f for f in KEY_FLAGS if f in flags)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
