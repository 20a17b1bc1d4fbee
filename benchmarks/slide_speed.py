"""Whole-slide feature extraction: `slide features` vs the reference loop, patches/s and peak RSS.

A cohort of real pyramidal slides is written with tifffile (benchmarks/_slides.py): 40x
(0.25 um/px), levels at downsamples 1, 4, 16 like an Aperio scan, so 224 px patches at 20x are
read as 448 px at level 0 and resized; the tissue is real LC25000 lung patches on glass, with
pen marks.

- ``reference_fp32``: what users write around OpenSlide and open_clip (CLAM's loop): for each
  slide, ``read_region`` at level 0 for every patch of the same coordinates ours found, RGB,
  Lanczos resize to 224, open_clip's preprocess, batches of ``--batch-size`` encoded in fp32 on
  the main thread, features + coords written to an .h5 (h5py). It gets the coordinates for free.
- ``ours_fp32``: :func:`biomedclip.slide.features.extract_features`, the whole `slide features`
  path: tissue segmentation and patching, patches read while the model runs (the engine's
  prefetch thread on <= 2 cores, DataLoader workers beyond), h5 + done marker per slide.
- ``ours_bf16`` (CPUs with native bf16, or GPUs), ``ours_onnx_int8`` (ONNX Runtime int8 image
  tower, exported once before timing): the fast backends, same path.

Same weights on both sides (open_clip's BiomedCLIP architecture, random, seeded; see
_reference.py). Each variant processes the whole cohort per run: a warm-up run, then
``--repeats`` runs interleaved round-robin (_bench.interleaved), median reported. Then one
``ours_fp32`` and one reference run over the cohort with a sampler thread reading the process
RSS every 20 ms: peak RSS per slide, to show it stays flat across the cohort.

    python benchmarks/slide_speed.py [--quick] [--slides 4] [--cells 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, scratch_dir, summarise, write_result  # noqa: E402
from _reference import SHARED, build_reference, ours_from_reference  # noqa: E402
from _slides import build_slide, lc25000  # noqa: E402
from biomedclip.embedding.encoder import Encoder, EncoderSettings, cpu_has_native_bf16  # noqa: E402
from biomedclip.errors import ConfigError  # noqa: E402
from biomedclip.imaging.wsi import open_slide  # noqa: E402
from biomedclip.slide.cohort import SlideInput  # noqa: E402
from biomedclip.slide.features import extract_features  # noqa: E402
from biomedclip.slide.layout import ExtractSettings  # noqa: E402
from biomedclip.slide.patching import plan_patches  # noqa: E402


def build_cohort(folder: Path, n: int, cells: int) -> list[SlideInput]:
    """``n`` 40x slides with ``cells`` tissue patches each (alternating tumour / normal)."""
    folder.mkdir(parents=True, exist_ok=True)
    side = int(np.ceil(np.sqrt(cells)))
    slides = []
    for k in range(n):
        cls = "lung_aca" if k % 2 == 0 else "lung_n"
        images = lc25000(SHARED, cls, cells, start=(k // 2) * cells)
        tiles = [(im, 1 + i % side, 1 + i // side) for i, im in enumerate(images)]
        grid = (side + 3, side + 2)
        spec = build_slide(
            folder / f"slide{k}.tif", tiles, grid=grid, patch_px=448, mpp=0.25, levels=3,
            level_factor=4, seed=k,
        )  # fmt: skip
        slides.append(SlideInput(f"slide{k}", str(spec.path)))
    return slides


def reference_run(oc, oc_pre, slides, coords, out: Path, batch_size: int) -> dict:
    """CLAM's loop: OpenSlide read_region + open_clip, fp32, everything on the main thread."""
    import h5py
    import openslide

    out.mkdir(parents=True, exist_ok=True)
    feats = {}
    with torch.inference_mode():
        for s in slides:
            xy = coords[s.slide_id]
            osr = openslide.OpenSlide(s.path)
            rows = []
            for i in range(0, len(xy), batch_size):
                batch = []
                for x, y in xy[i : i + batch_size].tolist():
                    im = osr.read_region((x, y), 0, (448, 448)).convert("RGB")
                    batch.append(oc_pre(im.resize((224, 224), Image.Resampling.LANCZOS)))
                rows.append(F.normalize(oc.encode_image(torch.stack(batch)), dim=-1).numpy())
            osr.close()
            feats[s.slide_id] = np.concatenate(rows)
            with h5py.File(out / f"{s.slide_id}.h5", "w") as f:
                f.create_dataset("features", data=feats[s.slide_id])
                f.create_dataset("coords", data=xy)
    return feats


def ours_run(encoder, slides, out: Path, model_dir: str) -> dict:
    from biomedclip.slide.features_file import h5_path, read_h5

    stats = extract_features(
        encoder, slides, out, ExtractSettings(), model_dir, overwrite=True, progress=False
    )
    assert stats.failed == 0, stats.errors
    return {s.slide_id: read_h5(h5_path(out, s.slide_id)).features for s in slides}


def rss_profile(fn, done_count) -> dict:
    """Run ``fn`` while a thread samples the RSS (MiB) and how many slides are done."""
    import psutil

    proc, samples, stop = psutil.Process(), [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((done_count(), proc.memory_info().rss / 2**20))
            time.sleep(0.02)

    before = proc.memory_info().rss / 2**20
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    per_slide: dict[int, float] = {}
    for k, rss in samples:
        per_slide[k] = max(per_slide.get(k, 0.0), rss)
    peaks = [round(per_slide[k], 1) for k in sorted(per_slide)]
    return {
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": max(peaks) if peaks else None,
        "peak_rss_per_slide_mib": peaks,
        "growth_first_to_last_slide_mib": round(peaks[-1] - peaks[0], 1) if peaks else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 slides x 8 patches, 1 repeat")
    ap.add_argument("--slides", type=int, default=None, help="slides in the cohort (4)")
    ap.add_argument("--cells", type=int, default=None, help="tissue patches per slide (24)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per variant (3)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--depth", type=int, default=None, help="keep the first N blocks (quick)")
    ap.add_argument(
        "--variants", default=None, help="comma-separated subset of the variants to time"
    )
    args = ap.parse_args()
    n_slides = args.slides or (2 if args.quick else 4)
    cells = args.cells or (8 if args.quick else 24)
    repeats = args.repeats or (1 if args.quick else 3)
    tmp = Path(scratch_dir("slide_speed_"))
    oc, oc_pre, _ = build_reference(tmp, depth=args.depth)
    ours, pre, tok = ours_from_reference(oc, tmp, depth=args.depth)
    model_dir = str(tmp / "ours")
    slides = build_cohort(tmp / "slides", n_slides, cells)
    coords = {}
    for s in slides:
        with open_slide(s.path) as sl:
            coords[s.slide_id] = plan_patches(sl).coords
    patches = sum(len(c) for c in coords.values())

    encoders = {"ours_fp32": EncoderSettings("fp32", batch_size=args.batch_size)}
    skipped = {}
    if cpu_has_native_bf16() or torch.cuda.is_available():
        encoders["ours_bf16"] = EncoderSettings("bf16", batch_size=args.batch_size)
    else:
        skipped["ours_bf16"] = "no native bf16 on this CPU (AVX512-BF16/AMX) and no GPU"
    encoders["ours_onnx_int8"] = EncoderSettings(backend="onnx-int8", batch_size=args.batch_size)
    if args.variants:
        keep = set(args.variants.split(","))
        encoders = {k: v for k, v in encoders.items() if k in keep}
    built, export_s = {}, None
    for name, settings in encoders.items():
        t = time.perf_counter()
        try:
            built[name] = Encoder(ours, pre, tok, settings)
        except ConfigError as e:
            skipped[name] = str(e)
            continue
        if name == "ours_onnx_int8":
            export_s = round(time.perf_counter() - t, 1)
    variants = {
        "reference_fp32": lambda: reference_run(
            oc, oc_pre, slides, coords, tmp / "ref_out", args.batch_size
        )
    }
    for name, enc in built.items():
        variants[name] = lambda enc=enc, name=name: ours_run(enc, slides, tmp / name, model_dir)
    timings = interleaved(variants, repeats)
    rows = summarise(timings, "reference_fp32", items=patches)
    ref = timings.outputs["reference_fp32"]
    result = {
        "quick": args.quick,
        "slides": n_slides,
        "patches": patches,
        "patches_per_slide": cells,
        "slide": "40x (0.25 um/px) pyramidal TIFF, levels at downsamples 1/4/16, zlib tiles; "
        "224 px patches at 20x read as 448 px at level 0 and Lanczos-resized",
        "batch_size": args.batch_size,
        "repeats": repeats,
        "model_depth": args.depth or "full (ViT-B/16 + PubMedBERT)",
        "weights": "random (seeded), identical on both sides",
        "decoding": (
            f"{EncoderSettings().workers()} DataLoader worker processes"
            if EncoderSettings().workers()
            else "one prefetch thread (no cores to spare for processes)"
        ),
        "onnx_int8_export_s": export_s,
        "skipped": skipped,
        "variants": {},
    }
    print(f"{n_slides} slides, {patches} patches; median of {repeats} interleaved runs")
    for name in variants:
        out = timings.outputs[name]
        diff = max(float(np.abs(out[s.slide_id] - ref[s.slide_id]).max()) for s in slides)
        cos = min(float((out[s.slide_id] * ref[s.slide_id]).sum(axis=1).min()) for s in slides)
        r = {**rows[name], "max_abs_diff_vs_reference": diff, "min_cosine_vs_reference": cos}
        result["variants"][name] = r
        print(
            f"{name:>15}: {r['items_per_s']:7.2f} patches/s  speed-up "
            f"{r['speedup_vs_reference_fp32']:5.2f}x  max|d| {diff:.1e}  min cos {cos:.5f}"
        )
    ours_enc = built["ours_fp32"]
    result["rss"] = {
        "ours_fp32": rss_profile(
            lambda: ours_run(ours_enc, slides, tmp / "rss", model_dir),
            lambda: (
                len(list((tmp / "rss" / "done").glob("*.json")))
                if (tmp / "rss" / "done").is_dir()
                else 0
            ),
        ),
        "reference_fp32": rss_profile(
            lambda: reference_run(oc, oc_pre, slides, coords, tmp / "rss_ref", args.batch_size),
            lambda: len(list((tmp / "rss_ref").glob("*.h5"))) if (tmp / "rss_ref").is_dir() else 0,
        ),
    }
    for name, r in result["rss"].items():
        print(f"{name:>15}: peak RSS per slide {r['peak_rss_per_slide_mib']} MiB")
    result["targets"] = {"ours_fp32_speedup_min": 1.5}
    name = "slide_speed" + ("_quick" if args.quick else "")
    print(f"wrote {write_result(name, result)}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
