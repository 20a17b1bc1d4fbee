"""The OpenVINO backend: both towers as OpenVINO IR at fp32, bf16 (native CPUs only) or int8.

Conversion goes from the same traceable towers as the ONNX export
(:class:`~biomedclip.model.onnx_graphs.ImageGraph` / ``TextGraph``: dynamic batch; the text tower
also a dynamic length) straight to OpenVINO (``openvino.convert_model``). int8 is NNCF post-training
quantisation (transformer preset; the patch embedding, the projections and the first and last
blocks stay in floating point, as in the ONNX recipe; on CPUs without VNNI/AMX-INT8 weights use 7
bits, NNCF's overflow fix) calibrated on the :mod:`.calibration` set. bf16 is a compile hint on
the fp32 IR and is refused on CPUs without native bf16; int8 runs its float parts in bf16 where
the CPU has it.

Cache (``$BIOMEDCLIP_CACHE/openvino``, default ``~/.cache/biomedclip/openvino``): one folder per
(sha256 of the weights, OpenVINO version) holding ``{image,text}-fp32.xml`` and
``{image,text}-int8-{vnni,novnni}.xml`` (+ ``.bin``) and ``meta.json`` (conversion seconds,
calibration, the measured run mode per CPU); compiled blobs live under ``compiled/<cpu>``. A second
start reads the IR and converts nothing. Needs the ``cpu-fast`` extra (openvino, nncf).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomedclip.embedding import cpu_features
from biomedclip.embedding.openvino_run import MODE_ENV, OVTower, choose_mode, compile_tower, threads
from biomedclip.errors import ConfigError
from biomedclip.onnx.signal_stack import keep_sigaltstack

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "int8")
TOWERS = ("image", "text")
EXTRA = "pip install 'biomedclip[cpu-fast]'"
_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: conversions done by this process (tests check that a second start converts nothing)
CONVERSIONS: list[str] = []


def require_openvino():
    """``openvino``, or a :class:`ConfigError` that names the extra."""
    try:
        import openvino
    except ImportError as e:
        raise ConfigError(
            f"--backend openvino needs OpenVINO and NNCF (the cpu-fast extra): {EXTRA}"
        ) from e
    return openvino


def require_nncf():
    try:
        import nncf
    except ImportError as e:
        raise ConfigError(f"OpenVINO int8 needs NNCF (the cpu-fast extra): {EXTRA}") from e
    return nncf


def openvino_version() -> str:
    return require_openvino().get_version().split("-")[0]


def check_precision(precision: str) -> None:
    """Refuse precisions the backend or this CPU cannot run (bf16 needs AMX or AVX512-BF16)."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"--backend openvino --precision {precision}: use one of {', '.join(PRECISIONS)}"
        )
    if precision == "bf16" and not cpu_features.native_bf16():
        raise ConfigError(
            "OpenVINO bf16 needs a CPU with native bf16 (amx_bf16 or avx512_bf16 in "
            f"/proc/cpuinfo); this CPU ({cpu_features.cpu_model()}) has "
            f"{cpu_features.flag_summary()}: use --precision int8 or fp32"
        )


def default_cache_dir() -> Path:
    base = os.environ.get("BIOMEDCLIP_CACHE") or Path.home() / ".cache" / "biomedclip"
    return Path(base) / "openvino"


def _fingerprint(model: torch.nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's weights (names, shapes, dtypes, values); memoised per model while
    its parameters are unchanged."""
    fp = _fingerprint(model)
    hit = _DIGESTS.get(model)
    if hit is not None and hit[0] == fp:
        return hit[1]
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    _DIGESTS[model] = (fp, h.hexdigest())
    return h.hexdigest()


def model_cache_dir(model: torch.nn.Module, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/<sha256[:24]>-ov<version>``: one folder per weights and OpenVINO version."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / f"{weights_sha256(model)[:24]}-ov{openvino_version()}"


def ir_name(tower: str, precision: str) -> str:
    """The IR file of a tower at a precision (bf16 runs the fp32 IR with a bf16 hint)."""
    if precision == "int8":
        return f"{tower}-int8-{'vnni' if cpu_features.int8_dot() else 'novnni'}.xml"
    return f"{tower}-fp32.xml"


# ---- conversion ---------------------------------------------------------------------------------
def convert(model: torch.nn.Module, tower: str):
    ov = require_openvino()
    from biomedclip.model.onnx_graphs import ImageGraph, TextGraph

    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32:
        raise ConfigError(f"OpenVINO runs an fp32 model on the CPU (got {p.dtype} on {p.device})")
    if tower == "image":
        s = int(model.config.vision.image_size)
        module, example = ImageGraph(model), (torch.zeros(2, 3, s, s),)
        inputs = [("pixels", [-1, 3, s, s], ov.Type.f32)]
    else:
        ids = torch.tensor([[2, 1000, 1001, 1002, 3], [2, 1000, 3, 0, 0]])
        ids = ids.clamp(max=model.config.text.bert.vocab_size - 1)
        mask = (torch.arange(5)[None] < torch.tensor([[5], [3]])).long()
        module, example = TextGraph(model), (ids, mask)
        inputs = [("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)]
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        ovm = ov.convert_model(module.eval(), example_input=example, input=inputs)
    ovm.outputs[0].get_tensor().set_names({"features"})
    return ovm


def _ignored_scope(nncf, tower: str, depth: int):
    if tower == "image":
        pats = [r".*patch_embed.*", r".*visual[./]head.*", r".*blocks[./]0[./].*"]
        pats.append(rf".*blocks[./]{depth - 1}[./].*")
    else:
        pats = [r".*text[./]proj.*", r".*layer[./]0[./].*", rf".*layer[./]{depth - 1}[./].*"]
    return nncf.IgnoredScope(patterns=pats, validate=False)


def quantize(ovm, tower: str, depth: int, samples: list, portable: bool = False):
    """NNCF post-training int8 of an fp32 IR on ``samples`` (one input per sample);
    ``portable``: 7-bit weights (NNCF's overflow fix) whatever this CPU, for IR run elsewhere."""
    nncf = require_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    nncf.set_log_level(logging.ERROR)
    vnni = cpu_features.int8_dot() and not portable
    fix = OverflowFix.DISABLE if vnni else OverflowFix.ENABLE
    # NNCF's progress bars never reach --json output; its calibration models are compiled (and
    # destroyed) under the signal-stack guard
    with contextlib.redirect_stdout(sys.stderr), keep_sigaltstack(collect=True):
        return nncf.quantize(
            ovm,
            nncf.Dataset(samples),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
            ignored_scope=_ignored_scope(nncf, tower, depth),
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix),
        )


def save_ir(ovm, path: Path) -> None:
    """Write ``path`` (.xml + .bin) atomically: the .xml, renamed last, is the commit point."""
    ov = require_openvino()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_xml = Path(tmp) / path.name
        ov.save_model(ovm, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp_xml, path)


def _read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _update_meta(folder: Path, **items: Any) -> dict:
    from biomedclip.io_utils import atomic_write_json

    meta = _read_meta(folder)
    for k, v in items.items():
        if isinstance(v, dict) and isinstance(meta.get(k), dict):
            meta[k] = {**meta[k], **v}
        else:
            meta[k] = v
    atomic_write_json(folder / "meta.json", meta)
    return meta


# ---- the towers of a model ------------------------------------------------------------------------
@dataclass
class OpenVINOTowers:
    """Callables of the engine: ``image(pixels) -> features``, ``text(ids, mask) -> features``
    (float32 tensors, unnormalised), and what provenance records about them."""

    image_tower: OVTower
    text_tower: OVTower
    info: dict = field(default_factory=dict)

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(pixels.detach().cpu().float().numpy())
        return torch.from_numpy(self.image_tower(x))

    def text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids = np.ascontiguousarray(input_ids.detach().cpu().long().numpy())
        mask = np.ascontiguousarray(attention_mask.detach().cpu().long().numpy())
        return torch.from_numpy(self.text_tower(ids, mask))


def _tower_ir(model, tower: str, precision: str, folder: Path, calibrate) -> tuple[Path, float]:
    """The IR of ``tower`` at ``precision``: read from the cache, else converted (and quantised)
    once; returns the path and the seconds spent converting now (0 on a cache hit)."""
    from biomedclip.model.onnx_graphs import tower_depth

    xml = folder / ir_name(tower, precision)
    if xml.is_file():
        return xml, 0.0
    start = time.perf_counter()
    fp32 = folder / ir_name(tower, "fp32")
    if fp32.is_file():
        ovm = require_openvino().Core().read_model(str(fp32))
    else:
        log.info("converting the %s tower to OpenVINO (once per model): %s", tower, fp32)
        ovm = convert(model, tower)
        save_ir(ovm, fp32)
        CONVERSIONS.append(f"{tower}-fp32")
    if precision == "int8":
        log.info("quantising the %s tower to int8 with NNCF (once per model and CPU)", tower)
        ovm = quantize(ovm, tower, tower_depth(model, tower), calibrate(tower))
        save_ir(ovm, xml)
        CONVERSIONS.append(f"{tower}-int8")
    return xml, time.perf_counter() - start


def openvino_towers_for(model, preprocess, tokenizer, precision: str, calibration=None):
    """Both towers of ``model`` at ``precision``, from the cache or converted once; reused in
    this process while the weights are unchanged. ``calibration``: a
    :class:`~biomedclip.embedding.calibration.CalibrationSet` (int8's first build needs its
    images)."""
    check_precision(precision)
    require_openvino()
    if precision == "int8":
        require_nncf()
    key = (_fingerprint(model), precision, os.environ.get(MODE_ENV), str(default_cache_dir()))
    hit = _TOWERS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    folder = model_cache_dir(model)
    cached = all((folder / ir_name(t, "int8")).is_file() for t in TOWERS)
    if precision == "int8" and not cached and (calibration is None or not calibration.has_images):
        raise ConfigError(
            "OpenVINO int8 is calibrated on real images the first time (per model and CPU "
            f"kind): pass --calibration DIR (or set BIOMEDCLIP_CALIBRATION); got "
            f"{calibration.description if calibration else 'none'}"
        )
    cpu = cpu_features.cpu_key()
    compiled_dir = folder / "compiled" / cpu
    pixels = None

    def calibrate(tower: str) -> list:
        nonlocal pixels
        from biomedclip.embedding.calibration import calibration_pixels, calibration_tokens

        if calibration is None:
            raise ConfigError("OpenVINO int8 needs a calibration set the first time")
        if tower == "image":
            pixels = calibration_pixels(calibration, preprocess) if pixels is None else pixels
            return [pixels[i : i + 1].numpy() for i in range(len(pixels))]
        if tokenizer is None:
            raise ConfigError("OpenVINO int8 calibrates the text tower with the tokenizer: pass "
                              "tokenizer= or load the model with biomedclip.load")  # fmt: skip
        return [(i.numpy(), m.numpy()) for i, m in calibration_tokens(calibration, tokenizer)]

    image_xml, image_s = _tower_ir(model, "image", precision, folder, calibrate)
    text_xml, text_s = _tower_ir(model, "text", precision, folder, calibrate)
    meta = _read_meta(folder)
    converted = {}
    if image_s or text_s:
        converted = {"image": round(image_s, 1), "text": round(text_s, 1)}
        log.warning(
            "OpenVINO %s: converted in %.0f s (image %.0f s, text %.0f s); cached in %s",
            precision,
            image_s + text_s,
            image_s,
            text_s,
            folder,
        )
        extra = {"calibration": calibration.description} if precision == "int8" else {}
        meta = _update_meta(folder, conversion_seconds={precision: converted}, **extra)
    mode_key = f"{cpu}:{precision}:{threads()}"
    forced = os.environ.get(MODE_ENV)
    mode = {"mode": forced} if forced in ("sync", "async") else meta.get("modes", {}).get(mode_key)
    if mode is None:
        size = int(model.config.vision.image_size)
        sample = pixels[:4].numpy() if pixels is not None else None
        if sample is None:
            sample = np.random.default_rng(0).standard_normal((4, 3, size, size), np.float32)
        mode = choose_mode(image_xml, precision, compiled_dir, sample)
        if mode.get("measured") or MODE_ENV not in os.environ:
            meta = _update_meta(folder, modes={mode_key: mode})
    towers = OpenVINOTowers(
        compile_tower(image_xml, precision, mode["mode"], compiled_dir),
        compile_tower(text_xml, precision, "sync", compiled_dir),
        {
            "backend": "openvino",
            "precision": precision,
            "openvino": openvino_version(),
            "weights_sha256": weights_sha256(model),
            "cache": str(folder),
            "image_mode": mode["mode"],
            "converted_now_seconds": converted or None,
            "calibration": meta.get("calibration") if precision == "int8" else None,
        },
    )
    _TOWERS[model] = (key, towers)
    return towers
