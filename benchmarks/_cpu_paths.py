"""Every CPU path of the engine, built the way the commands build them, for the speed benchmarks.

``cpu_paths(model, calibration)`` returns ``{name: Encoder}``: torch fp32 (the baseline), torch
bf16 (autocast; with ``--torch-bf16-study`` also the weights cast to bf16 and torch.compile over
autocast), ONNX Runtime int8, OpenVINO fp32 / int8 (sync one batched request and async throughput
streams, both timed) / bf16 (native-bf16 CPUs only), and ``auto`` (what it chose here). One-off
conversion seconds are returned beside them (measured in a fresh cache, so they are real).
"""

from __future__ import annotations

import copy
import os
import time

import torch

from _bench import scratch_dir
from biomedclip.embedding import cpu_features
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.errors import ConfigError


def add_arguments(ap) -> None:
    ap.add_argument("--no-cpu-paths", action="store_true", help="only torch fp32/bf16 (no ONNX/OV)")
    ap.add_argument(
        "--torch-bf16-study",
        action="store_true",
        help="also time bf16 weights (cast) and torch.compile + autocast (slow to compile)",
    )


def cpu_paths(model, calibration, args, cache: str | None = None) -> tuple[dict, dict]:
    """``({name: Encoder}, {name: one-off build seconds})`` of the CPU paths."""
    cache = cache or scratch_dir("bench_cache_")
    os.environ["BIOMEDCLIP_CACHE"] = cache  # a fresh cache: the conversions are measured
    encs = {
        "ours_fp32": Encoder(model, settings=EncoderSettings("fp32")),
        "ours_bf16": Encoder(model, settings=EncoderSettings("bf16")),
    }
    built: dict[str, float] = {}
    if args.torch_bf16_study:
        encs["ours_bf16_cast_weights"] = Encoder(
            copy.deepcopy(model).to(torch.bfloat16), settings=EncoderSettings("fp32")
        )
        encs["ours_bf16_compile"] = Encoder(model, settings=EncoderSettings("bf16", compile=True))
    if args.no_cpu_paths:
        return encs, built
    todo = [("ours_onnx_int8", {"backend": "onnx-int8"}, None)]
    todo += [("ours_openvino_fp32", {"backend": "openvino"}, None)]
    todo += [("ours_openvino_int8_sync", {"backend": "openvino", "precision": "int8"}, "sync")]
    todo += [("ours_openvino_int8_async", {"backend": "openvino", "precision": "int8"}, "async")]
    if cpu_features.native_bf16():
        todo += [("ours_openvino_bf16", {"backend": "openvino", "precision": "bf16"}, None)]
    todo += [("ours_auto", {"backend": "auto"}, None)]
    for name, kw, mode in todo:
        if mode:
            os.environ["BIOMEDCLIP_OV_MODE"] = mode
        try:
            t = time.perf_counter()
            encs[name] = Encoder(
                model, settings=EncoderSettings(**kw, calibration=calibration, num_workers=0)
            )
            built[name] = round(time.perf_counter() - t, 1)
        except ConfigError as e:  # a missing extra
            print(f"skipping {name}: {e}")
        finally:
            os.environ.pop("BIOMEDCLIP_OV_MODE", None)
    if "ours_auto" in encs:
        prov = encs["ours_auto"].provenance()
        built["auto_choice"] = prov["label"]
        built["auto_min_cosine"] = prov.get("min_cosine")
    return encs, built
