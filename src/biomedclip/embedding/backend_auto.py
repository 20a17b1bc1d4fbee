"""``--backend auto``: the fastest path for this CPU that stays within cosine 0.999 of fp32.

Candidates, by the CPU's flags (:mod:`.cpu_features`): OpenVINO int8 (its float parts in bf16
where the CPU has native bf16), OpenVINO bf16 and torch bf16 (native bf16 only), ONNX Runtime
int8 (image tower; texts fp32), OpenVINO fp32 and torch fp32. Each available one is measured once, when the
model is first built on this CPU, on the calibration set (:mod:`.calibration`): image throughput
on up to :data:`TIME_IMAGES` preprocessed images and text throughput on up to :data:`TEXTS`
prompts (the candidates interleaved, median of three rounds after a warm-up), and the min cosine to
torch fp32 over those images and prompts. The fastest whose min cosine is >= :data:`MIN_COSINE`
wins (torch fp32 always qualifies). Where an OpenVINO candidate encodes the texts fastest within
the bar, texts run there whatever the image choice (``text`` in the decision). The decision, with every
candidate's figures and the CPU record, is cached in ``$BIOMEDCLIP_CACHE/auto/<weights>-<cpu>.json``
(keyed by the weights' sha256, the CPU model + flags and the backends' versions), so later starts
read it and measure nothing. On a GPU, ``auto`` is torch bf16 autocast without measuring.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from biomedclip.embedding import cpu_features
from biomedclip.errors import ConfigError

log = logging.getLogger(__name__)
MIN_COSINE = 0.999
TIME_IMAGES = 16
TEXTS = 64


def candidates(flags: frozenset[str]) -> list[tuple[str, str, str]]:
    """``(name, backend, precision)`` to try on a CPU with ``flags``, in the documented order."""
    out = [("openvino-int8", "openvino", "int8")]
    if cpu_features.native_bf16(flags):
        out += [("openvino-bf16", "openvino", "bf16"), ("torch-bf16", "torch", "bf16")]
    out += [("onnx-int8", "onnx-int8", "fp32"), ("openvino-fp32", "openvino", "fp32")]
    return out + [("torch-fp32", "torch", "fp32")]


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def versions() -> dict[str, str | None]:
    return {m: _version(m) for m in ("torch", "openvino", "nncf", "onnxruntime")}


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def unavailable(backend: str, precision: str) -> str | None:
    """Why a candidate cannot run here (a missing extra), or None."""
    if backend == "openvino" and not (
        _importable("openvino") and (precision != "int8" or _importable("nncf"))
    ):
        return "the cpu-fast extra (openvino, nncf) is not installed: pip install 'biomedclip[cpu-fast]'"
    if backend == "onnx-int8" and not _importable("onnxruntime"):
        return "the onnx extra (onnxruntime) is not installed"
    return None


def decision_path(weights_sha256: str) -> Path:
    base = os.environ.get("BIOMEDCLIP_CACHE") or Path.home() / ".cache" / "biomedclip"
    return Path(base) / "auto" / f"{weights_sha256[:24]}-{cpu_features.cpu_key()}.json"


def build_candidate(model, preprocess, tokenizer, settings):
    """One candidate's encoder (converted / quantised once and cached; tests replace this)."""
    from biomedclip.embedding.encoder import Encoder

    return Encoder(model, preprocess, tokenizer, settings)


def measure_candidates(encoders: dict, pixels, tokens, reference, rounds: int = 3) -> dict:
    """``{name: figures}``: image throughput (median of ``rounds`` passes, the candidates
    interleaved so that a busy machine slows them alike) and min cosine to fp32 (images, texts)."""
    import statistics

    times: dict[str, list[float]] = {n: [] for n in encoders}
    text_times: dict[str, list[float]] = {n: [] for n in encoders}
    outs, texts = {}, {}
    for enc in encoders.values():
        enc.encode_pixels(pixels[:2])  # warm-up
        enc.encode_tokens(*tokens)
    for _ in range(rounds):
        for name, enc in encoders.items():
            start = time.perf_counter()
            outs[name] = enc.encode_pixels(pixels)
            times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            texts[name] = enc.encode_tokens(*tokens)
            text_times[name].append(time.perf_counter() - start)
    figures = {}
    for name in encoders:
        cos_image = float((outs[name] * reference[0]).sum(-1).min())
        cos_text = float((texts[name] * reference[1]).sum(-1).min())
        figures[name] = {
            "img_per_s": round(len(pixels) / statistics.median(times[name]), 3),
            "texts_per_s": round(len(tokens[0]) / statistics.median(text_times[name]), 3),
            "min_cosine_image": round(cos_image, 6),
            "min_cosine_text": round(cos_text, 6),
            "min_cosine": round(min(cos_image, cos_text), 6),
        }
    return figures


def _measure_all(model, preprocess, tokenizer, settings, calibration) -> list[dict]:
    from biomedclip.embedding.calibration import calibration_pixels
    from biomedclip.embedding.encoder import Encoder

    pixels = calibration_pixels(calibration, preprocess)[:TIME_IMAGES]
    tokens = tokenizer(calibration.texts[:TEXTS], warn=False)
    tokens = (tokens.input_ids, tokens.attention_mask)
    base = replace(settings, backend="torch", precision="fp32", compile=False)
    ref_enc = Encoder(model, preprocess, tokenizer, base)
    reference = (ref_enc.encode_pixels(pixels), ref_enc.encode_tokens(*tokens))
    rows, encoders = [], {}
    for name, backend, precision in candidates(cpu_features.cpu_flags()):
        row = {"name": name, "backend": backend, "precision": precision}
        rows.append(row)
        why = unavailable(backend, precision)
        if why:
            row["skipped"] = why
            continue
        try:
            s = replace(base, backend=backend, precision=precision, calibration=calibration)
            encoders[name] = (
                ref_enc
                if name == "torch-fp32"
                else build_candidate(model, preprocess, tokenizer, s)
            )
        except ConfigError as e:
            row["skipped"] = str(e)
    figures = measure_candidates(encoders, pixels, tokens, reference)
    for row in rows:
        row.update(figures.get(row["name"], {}))
        log.info("auto: %s", row)
    return rows


def pick(rows: list[dict]) -> dict:
    """The fastest measured row with ``min_cosine >= MIN_COSINE`` (torch fp32 if none)."""
    ok = [r for r in rows if "skipped" not in r and r.get("min_cosine", 0) >= MIN_COSINE]
    if not ok:
        return {"name": "torch-fp32", "backend": "torch", "precision": "fp32", "min_cosine": 1.0}
    return max(ok, key=lambda r: r["img_per_s"])


def pick_text(rows: list[dict]) -> dict | None:
    """The text tower's own path: the fastest row at ``min_cosine_text >= MIN_COSINE`` when it is
    an OpenVINO one (texts then run there whatever the image choice); None: texts follow it."""
    ok = [
        r
        for r in rows
        if "skipped" not in r and r.get("min_cosine_text", 0) >= MIN_COSINE and "texts_per_s" in r
    ]
    if not ok:
        return None
    best = max(ok, key=lambda r: r["texts_per_s"])
    if best["backend"] != "openvino":
        return None
    keys = ("name", "backend", "precision", "texts_per_s", "min_cosine_text")
    return {k: best[k] for k in keys}


def choose(model, preprocess, tokenizer, settings, calibration) -> dict:
    """The decision for ``model`` on this CPU: read from the cache, else measured and cached."""
    from biomedclip.embedding.openvino_backend import weights_sha256
    from biomedclip.io_utils import atomic_write_json

    device = next(model.parameters()).device
    if device.type != "cpu":
        return {
            "choice": "torch-bf16",
            "backend": "torch",
            "precision": "bf16",
            "device": str(device),
        }
    digest = weights_sha256(model)
    path = decision_path(digest)
    try:
        cached = json.loads(path.read_text())
        if cached.get("versions") == versions() and cached.get("cpu") == cpu_features.cpu_record():
            return {**cached, "cached": True}
    except (OSError, ValueError):
        pass
    if calibration is None or not calibration.has_images:
        raise ConfigError(
            "--backend auto measures the paths once per model and CPU on real images: pass "
            "--calibration DIR (a folder of images; or set BIOMEDCLIP_CALIBRATION)"
        )
    start = time.perf_counter()
    rows = _measure_all(model, preprocess, tokenizer, settings, calibration)
    best = pick(rows)
    decision = {
        "choice": best["name"],
        "backend": best["backend"],
        "precision": best["precision"],
        "min_cosine": best.get("min_cosine"),
        "text": pick_text(rows),
        "threshold": MIN_COSINE,
        "cpu": cpu_features.cpu_record(),
        "versions": versions(),
        "weights_sha256": digest,
        "calibration": calibration.description,
        "candidates": rows,
        "measured_seconds": round(time.perf_counter() - start, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, decision)
    log.warning(
        "--backend auto chose %s (min cosine %s) on %s in %.0f s; cached in %s",
        decision["choice"],
        decision["min_cosine"],
        decision["cpu"]["kind"],
        decision["measured_seconds"],
        path,
    )
    return {**decision, "cached": False}
