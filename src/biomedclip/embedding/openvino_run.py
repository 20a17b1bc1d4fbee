"""Running OpenVINO towers: compile for this CPU (bf16 / f32 inference hint, thread count, the
compiled-blob cache) and call them in one batched request (``sync``) or split over an async infer
queue with throughput streams (``async``); :func:`choose_mode` times both once and the faster one
is recorded per CPU in the model's cache ``meta.json`` (``BIOMEDCLIP_OV_MODE=sync|async`` skips
the measurement)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from biomedclip.embedding import cpu_features
from biomedclip.onnx.signal_stack import keep_sigaltstack

MODE_ENV = "BIOMEDCLIP_OV_MODE"


def require_openvino():
    from biomedclip.embedding.openvino_backend import require_openvino as req

    return req()


class OVTower:
    """A compiled tower: ``sync`` (one batched request) or ``async`` (the batch split over an
    async infer queue, one request per throughput stream)."""

    def __init__(self, compiled, mode: str):
        ov = require_openvino()
        self.compiled, self.mode = compiled, mode
        self._lock = threading.Lock()
        if mode == "async":
            n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self.queue = ov.AsyncInferQueue(compiled, n)
            self.queue.set_callback(self._done)
            self._out: dict[int, np.ndarray] = {}
        else:
            self.request = compiled.create_infer_request()

    def _done(self, request, index) -> None:
        self._out[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        with self._lock:
            if self.mode == "sync" or len(arrays[0]) < 2:
                req = self.request if self.mode == "sync" else self.compiled.create_infer_request()
                return req.infer(list(arrays))[0].copy()
            k = min(len(arrays[0]), len(self.queue))
            bounds = np.linspace(0, len(arrays[0]), k + 1).astype(int)
            self._out = {}
            for i in range(k):
                self.queue.start_async([a[bounds[i] : bounds[i + 1]] for a in arrays], i)
            self.queue.wait_all()
            return np.concatenate([self._out[i] for i in range(k)])


def threads() -> int:
    return max(1, torch.get_num_threads())


def compile_tower(xml: Path, precision: str, mode: str, cache: Path):
    """Compile an IR for this CPU (compiled blobs cached under ``cache``)."""
    ov = require_openvino()
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache)})
    native = cpu_features.native_bf16()
    hint = "bf16" if precision == "bf16" or (precision == "int8" and native) else "f32"
    config = {
        "INFERENCE_PRECISION_HINT": hint,
        "PERFORMANCE_HINT": "THROUGHPUT" if mode == "async" else "LATENCY",
        "INFERENCE_NUM_THREADS": threads(),
    }
    with keep_sigaltstack():
        compiled = core.compile_model(str(xml), "CPU", config)
    return OVTower(compiled, mode)


def _median_seconds(fn, arrays, reps: int = 2) -> float:
    fn(*[a[:1] for a in arrays])  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(*arrays)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def choose_mode(xml: Path, precision: str, cache: Path, sample: np.ndarray) -> dict:
    """Time one batched call against the async queue on ``sample``; the faster wins."""
    forced = os.environ.get(MODE_ENV)
    if forced in ("sync", "async"):
        return {"mode": forced, "measured": False}
    if threads() < 2 or len(sample) < 2:
        return {"mode": "sync", "measured": False, "why": "one thread or one image"}
    secs = {}
    for mode in ("sync", "async"):
        secs[mode] = _median_seconds(compile_tower(xml, precision, mode, cache), (sample,))
    best = min(secs, key=secs.get)
    return {"mode": best, "measured": True, "images": len(sample), "seconds": secs}
