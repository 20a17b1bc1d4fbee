"""End to end: real JPEGs from a folder -> embeddings (decode + preprocess + model), ours vs the
reference loop, in one process on the same files and the same weights.

Reference: what users write around open_clip (open each file, preprocess, batch, encode in fp32,
all on the main thread). Ours: the engine behind ``biomedclip embed`` on the same folder, which
decodes the next batch while the model runs (a thread on <= 2 cores, worker processes beyond).

Variants (``--variants``; the default runs all that make sense on this machine):

- ``ours_fp32``: exact (the same pixels and forward pass as the reference).
- ``ours_fp32_fast_decode``: JPEGs decoded at a reduced DCT scale before the exact resize.
- ``ours_bf16_fast_decode``: + bf16 autocast. Left out by default where it would be slower than
  fp32 (a CPU without AVX512-BF16/AMX and no GPU); the result says so.
- ``ours_onnx_int8_fast_decode``: + the image tower through ONNX Runtime with int8 weights
  (exported and quantised once before timing; the export time is reported).
- ``ours_fp32_no_overlap``: ablation, our engine with decoding on the main thread.

The images are processed in chunks (one folder each); within a chunk every variant runs once, in
an order rotated from chunk to chunk, so background load hits them alike. After a warm-up on a
few images, every image is timed once per variant. Prints images/s, speed-ups, the max |difference|
of ``ours_fp32`` to the reference and the minimum cosine of each other variant to ``ours_fp32``;
also the decode+preprocess step alone, exact vs fast, with the pixel difference it makes.

    python benchmarks/end_to_end.py [--quick] [--images 500] [--batch-size 32] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import real_jpegs  # noqa: E402
from _reference import build_reference, ours_from_reference, write_result  # noqa: E402
from biomedclip.embedding import EmbedConfig, embed_source, engine, sources  # noqa: E402
from biomedclip.embedding.encoder import (  # noqa: E402
    Encoder,
    EncoderSettings,
    cpu_has_native_bf16,
)
from biomedclip.errors import ConfigError  # noqa: E402
from biomedclip.imaging import ReadOptions, read_image  # noqa: E402

ALL = (
    "reference_fp32",
    "ours_fp32",
    "ours_fp32_fast_decode",
    "ours_bf16_fast_decode",
    "ours_onnx_int8_fast_decode",
    "ours_openvino_int8_fast_decode",
    "ours_auto_fast_decode",
    "ours_fp32_no_overlap",
)
DEFAULT = ALL[
    :-1
]  # openvino/auto: int8 calibrated on (and auto measured on) the job's first images


def reference_loop(oc, oc_pre, paths: list[Path], batch_size: int) -> np.ndarray:
    """What users write around open_clip: open, preprocess, batch, encode (fp32)."""
    out = []
    device = next(oc.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            batch = torch.stack([oc_pre(Image.open(p)) for p in paths[i : i + batch_size]])
            feats = oc.encode_image(batch.to(device))
            out.append(F.normalize(feats, dim=-1).cpu().numpy())
    return np.concatenate(out)


def config_of(name: str, batch_size: int, workers: int | None) -> EmbedConfig:
    return EmbedConfig(
        batch_size=batch_size,
        num_workers=workers,
        precision="bf16" if "bf16" in name else "int8" if "openvino_int8" in name else "fp32",
        backend="onnx-int8"
        if "onnx" in name
        else "openvino"
        if "openvino" in name
        else "auto"
        if "auto" in name
        else "torch",
        fast_decode="fast_decode" in name,
        progress=False,
    )


def no_overlap(iterable, depth=2):
    """The engine's decoding thread replaced by decoding on the main thread (ablation)."""
    return iter(iterable)


def run_ours(name, model, pre, tok, paths, batch_size, workers):
    src = sources.image_files(paths)
    cfg = config_of(name, batch_size, workers)
    threaded = engine.prefetch
    if name == "ours_fp32_no_overlap":
        engine.prefetch = no_overlap
    try:
        res = embed_source(model, pre, tok, src, cfg)
    finally:
        engine.prefetch = threaded
    assert not res.failures, res.failures
    return res.ids, res.embeddings


def decode_step(pre, paths: list[Path], draft: int | None) -> tuple[float, list[torch.Tensor]]:
    """Seconds per image of read + preprocess (the engine's reader), and the pixel tensors."""
    opts = ReadOptions(mode=None, draft=draft)
    t = time.perf_counter()
    out = [pre(read_image(p, opts).images[0]) for p in paths]
    return (time.perf_counter() - t) / len(paths), out


def decode_comparison(pre, paths: list[Path], size: int, repeats: int = 3) -> dict:
    """The decode + preprocess step alone, exact vs fast (JPEGs drafted to sides >= ``size``),
    and how far apart their pixels are."""
    exact_s, fast_s = [], []
    for _ in range(repeats):
        s, exact = decode_step(pre, paths, None)
        exact_s.append(s)
        s, fast = decode_step(pre, paths, size)
        fast_s.append(s)
    diffs = torch.stack([(a - b).abs().mean() for a, b in zip(exact, fast)])
    scaled = sum(
        1 for p in paths if "draft_scale" in read_image(p, ReadOptions(draft=size)).item(0)
    )
    e, f = statistics.median(exact_s), statistics.median(fast_s)
    return {
        "images": len(paths),
        "draft_min_side": size,
        "images_decoded_at_reduced_scale": scaled,
        "exact_ms_per_image": round(e * 1000, 2),
        "fast_ms_per_image": round(f * 1000, 2),
        "speedup": round(e / f, 2),
        "mean_abs_pixel_diff_normalised": round(float(diffs.mean()), 4),
        "max_per_image_mean_abs_pixel_diff": round(float(diffs.max()), 4),
        "note": "pixels after the model's normalisation (units of the channel std)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 images in 2 chunks")
    ap.add_argument("--images", type=int, default=None, help="default: 500 (100 with --quick)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=None, help="rotation chunks (default: 5)")
    ap.add_argument("--variants", default=None, help=f"comma-separated, of: {', '.join(ALL)}")
    ap.add_argument(
        "--workers", type=int, default=None, help="our decoding processes (default: auto)"
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides run there)")
    args = ap.parse_args()
    n = args.images or (100 if args.quick else 500)
    chunks = args.chunks or (2 if args.quick else 5)
    bf16_fast = args.device.startswith("cuda") or cpu_has_native_bf16()
    names = args.variants.split(",") if args.variants else list(DEFAULT)
    skipped = {}
    if args.variants is None and not bf16_fast:
        names.remove("ours_bf16_fast_decode")
        skipped["ours_bf16_fast_decode"] = (
            "this CPU has no native bf16 (AVX512-BF16/AMX) and the run is not on a GPU: bf16 "
            "autocast runs emulated, 0.16x fp32 in image_speed.json; --device cuda, or "
            "--variants to time it anyway"
        )
    unknown = set(names) - set(ALL)
    if unknown or "reference_fp32" not in names or "ours_fp32" not in names:
        raise SystemExit(f"--variants needs reference_fp32 and ours_fp32; unknown: {unknown}")
    with tempfile.TemporaryDirectory() as tmp:
        oc, oc_pre, _ = build_reference(tmp)
        ours, pre, tok = ours_from_reference(oc, tmp)
        oc, ours = oc.to(args.device), ours.to(args.device)
        folder = Path(tmp) / "images"
        paths = []
        for i, src in enumerate(real_jpegs(n)):  # a folder of symlinks to the real files
            link = folder / f"{i * chunks // n:02d}" / f"{i:04d}_{src.parent.name}_{src.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src)
            paths.append(link)
        draft = Encoder(ours, settings=EncoderSettings(fast_decode=True)).read.draft
        decode = decode_comparison(pre, paths, draft)
        print(f"decode + preprocess alone: {decode}", flush=True)
        os.environ["BIOMEDCLIP_CACHE"] = str(Path(tmp) / "cache")
        export_s = None
        if any("onnx" in k for k in names):
            t = time.perf_counter()
            try:  # one-off export + quantisation, cached for the timed runs
                Encoder(ours, settings=EncoderSettings(backend="onnx-int8"))
                export_s = round(time.perf_counter() - t, 1)
            except ConfigError as e:
                skipped["ours_onnx_int8_fast_decode"] = str(e)
                names.remove("ours_onnx_int8_fast_decode")
        built: dict[str, float] = {}  # one-off conversion / NNCF / auto's measurement, seconds
        for k in [k for k in names if "openvino" in k or "auto" in k]:
            t = time.perf_counter()
            try:  # one-off conversion / NNCF / auto's measurement, cached for the timed runs
                cfg = config_of(k, args.batch_size, 0)
                Encoder(ours, pre, tok, replace(cfg.encoder_settings(), calibration=paths[:32]))
                built[k] = round(time.perf_counter() - t, 1)
            except ConfigError as e:
                skipped[k] = str(e)
                names.remove(k)
        warm = paths[:4]  # first-call allocations, not timed
        reference_loop(oc, oc_pre, warm, 4)
        for name in names[1:]:
            run_ours(name, ours, pre, tok, warm, 4, 0)
        seconds = dict.fromkeys(names, 0.0)
        per_chunk: dict[str, list[float]] = {k: [] for k in names}
        emb: dict[str, dict[str, np.ndarray]] = {k: {} for k in names}
        chunk_dirs = sorted({p.parent for p in paths})
        for c, d in enumerate(chunk_dirs):
            chunk_paths = sorted(d.iterdir())
            order = names[c % len(names) :] + names[: c % len(names)]
            for name in order:
                t = time.perf_counter()
                if name == "reference_fp32":
                    vecs = reference_loop(oc, oc_pre, chunk_paths, args.batch_size)
                    ids = [str(p) for p in chunk_paths]
                else:
                    ids, vecs = run_ours(
                        name, ours, pre, tok, chunk_paths, args.batch_size, args.workers
                    )
                per_chunk[name].append(round(time.perf_counter() - t, 2))
                seconds[name] += per_chunk[name][-1]
                emb[name].update(zip(ids, vecs))
            print(
                f"chunk {c + 1}/{len(chunk_dirs)}: {len(chunk_paths)} images, {order}", flush=True
            )
    keys = sorted(emb["reference_fp32"])
    mats = {k: np.stack([emb[k][i] for i in keys]) for k in names}
    ref_s = seconds["reference_fp32"]
    result = {
        "quick": args.quick,
        "device": args.device,
        "images": n,
        "sources": "SLAKE, VQA-RAD and LC25000 JPEGs from ../shared/data, round-robin",
        "weights": "random (seeded), identical on both sides: cosines compare the computations",
        "batch_size": args.batch_size,
        "chunks": len(chunk_dirs),
        "decoding": (
            f"{EmbedConfig(num_workers=args.workers).workers()} worker processes"
            if EmbedConfig(num_workers=args.workers).workers()
            else "one background thread (no cores to spare for processes)"
        ),
        "onnx_int8_export_s": export_s,
        "decode_step": decode,
        "variants": {},
        "skipped": skipped,
        "one_off_build_s": built,
    }
    print(f"{n} real JPEGs (SLAKE, VQA-RAD, LC25000), batch {args.batch_size}")
    for k in names:
        row = {
            "seconds": round(seconds[k], 3),
            "images_per_s": round(n / seconds[k], 2),
            "speedup_vs_reference": round(ref_s / seconds[k], 3),
            "seconds_per_chunk": per_chunk[k],
        }
        if k == "ours_fp32":
            row["max_abs_diff_vs_reference"] = float(np.abs(mats[k] - mats[names[0]]).max())
        elif k != "reference_fp32":
            row["min_cosine_vs_ours_fp32"] = float((mats[k] * mats["ours_fp32"]).sum(1).min())
        result["variants"][k] = row
        extra = {kk: v for kk, v in row.items() if kk not in ("seconds", "images_per_s")}
        extra["seconds_per_chunk"] = per_chunk[k]
        print(f"{k:>27}: {seconds[k]:7.1f} s  {n / seconds[k]:6.2f} img/s  {extra}")
    for k, why in skipped.items():
        print(f"{k:>27}: skipped ({why})")
    result["targets"] = {
        "ours_fp32_speedup_min": 1.0,
        "bf16_fast_decode_speedup_min": 2.5,
        "min_cosine_vs_fp32": 0.999,
    }
    if export_s is not None:
        print(f"onnx-int8 one-off export + quantisation (not in the timings): {export_s:.1f} s")
    name = "end_to_end_quick" if args.quick else "end_to_end"
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
