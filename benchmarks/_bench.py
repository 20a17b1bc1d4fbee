"""Shared plumbing of the side-by-side benchmarks: warm-up, interleaved timing, medians, machine
info and result files.

Every speed figure comes from :func:`interleaved`: each variant runs once untimed (the warm-up,
whose output is kept for the accuracy comparison), then the timed repetitions go round-robin
over the variants, with the order rotated every round, so that background load and thermal drift
hit every variant alike. :func:`summarise` reports medians and ratios to a baseline;
:func:`write_result` writes ``benchmarks/results/<name>.json`` with the machine, package versions
and the load average when the script started and when it finished (this machine is shared: the
load average says how busy it was).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LOAD_AT_START = os.getloadavg()  # the script imports this module first thing
PACKAGES = (
    "biomedclip",
    "torch",
    "open_clip_torch",
    "timm",
    "transformers",
    "tokenizers",
    "numpy",
    "pyarrow",
    "onnxruntime",
    "openvino",
    "nncf",
    "faiss-cpu",
)


@dataclass
class Timings:
    """Per-variant run times (seconds) and the warm-up outputs."""

    runs: dict[str, list[float]]
    outputs: dict[str, Any]

    def median(self, name: str) -> float:
        return statistics.median(self.runs[name])


def scratch_dir(prefix: str) -> str:
    """A temporary folder removed when the benchmark exits (model exports and compiled caches run
    to gigabytes per run)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def interleaved(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> Timings:
    """Warm every variant up (``warmup`` untimed calls; the first one's output is kept), then time
    ``repeats`` calls of each, round-robin with the order rotated every round. ``warmup=0`` is for
    callers that ran (and measured) their warm-up themselves."""
    outputs: dict[str, Any] = {}
    for name, fn in variants.items():
        for i in range(warmup):
            out = fn()
            if i == 0:
                outputs[name] = out
        sync()
    names = list(variants)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync()
            t = time.perf_counter()
            variants[name]()
            sync()
            runs[name].append(time.perf_counter() - t)
    return Timings(runs, outputs)


def summarise(timings: Timings, baseline: str, items: int | None = None) -> dict[str, dict]:
    """Median seconds, every run, items/s and the speed-up over ``baseline``, per variant."""
    base = timings.median(baseline)
    out = {}
    for name, runs in timings.runs.items():
        med = statistics.median(runs)
        row = {
            "median_s": round(med, 5),
            "runs_s": [round(t, 5) for t in runs],
            f"speedup_vs_{baseline}": round(base / med, 3),
        }
        if items:
            row["items_per_s"] = round(items / med, 2)
        out[name] = row
    return out


def versions() -> dict[str, str | None]:
    from biomedclip.export.manifest import library_versions

    return library_versions(PACKAGES)


def machine_info() -> dict:
    """What the figures were measured on: CPU model and cores, threads, platform, GPU."""
    import torch

    from biomedclip.embedding.encoder import cpu_has_native_bf16

    info: dict[str, Any] = {
        "cpu_model": None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.splitlines()
                if "model name" in line
            ),
            None,
        )
        flags = cpuinfo.split("flags", 1)[1].split("\n", 1)[0].split()
        info["cpu_bf16"] = cpu_has_native_bf16()
        info["cpu_amx"] = "amx_tile" in flags
        from biomedclip.embedding.cpu_features import cpu_record

        info["cpu"] = cpu_record()  # kind (AMX / AVX-512 / AVX2) and the key flags, present or not
    except (OSError, IndexError):
        pass
    return info


def write_result(name: str, result: dict) -> Path:
    """Write ``benchmarks/results/<name>.json``: the result plus machine, versions, load average."""
    load_end = os.getloadavg()
    cores = os.cpu_count() or 1
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "versions": versions(),
        "load_average": {
            "start_1_5_15min": [round(x, 2) for x in LOAD_AT_START],
            "end_1_5_15min": [round(x, 2) for x in load_end],
            "note": (
                f"{cores} cores; a 1-minute load above {cores} means other processes competed "
                "for the CPUs, which slows every variant (interleaving spreads it evenly)"
            ),
        },
        **result,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out
