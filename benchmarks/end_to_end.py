"""End to end: 500 real JPEGs from a folder -> embeddings (decode + preprocess + model).

Reference: a straightforward open_clip loop (open each file, preprocess, batch, encode in fp32 on the
main thread). Ours: `biomedclip embed`'s engine on the same folder (DataLoader workers decode while
the model runs) at fp32 (exact), with the bf16 fast path and with the onnx-int8 backend (exported
and cached before timing; the export time is reported). Same weights. The 500 images are
processed in chunks, and within each chunk the three runs take turns in rotating order, so that
background load on the machine hits them alike. Prints images/s, speed-ups, the max |difference|
to the reference at fp32 and the minimum cosine of the fast path to fp32.

    python benchmarks/end_to_end.py [--quick] [--images 500] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _images import real_jpegs  # noqa: E402
from _reference import build_reference, ours_from_reference, write_result  # noqa: E402
from biomedclip.embedding import EmbedConfig, embed_source, sources  # noqa: E402
from biomedclip.embedding.encoder import Encoder, EncoderSettings  # noqa: E402
from biomedclip.errors import ConfigError  # noqa: E402


def reference_loop(oc, oc_pre, paths: list[Path], batch_size: int) -> np.ndarray:
    """What users write around open_clip: open, preprocess, batch, encode (fp32)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            batch = torch.stack([oc_pre(Image.open(p)) for p in paths[i : i + batch_size]])
            out.append(F.normalize(oc.encode_image(batch), dim=-1).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 images")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=None, help="rotation chunks (default: 5)")
    ap.add_argument(
        "--workers", type=int, default=None, help="our decoding workers (default: auto)"
    )
    args = ap.parse_args()
    n = args.images or (100 if args.quick else 500)
    chunks = args.chunks or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        oc, oc_pre, _ = build_reference(tmp)
        ours, pre, tok = ours_from_reference(oc, tmp)
        folder = Path(tmp) / "images"
        paths = []
        for i, src in enumerate(real_jpegs(n)):  # a folder of symlinks to the real files
            link = folder / f"{i * chunks // n:02d}" / f"{i:04d}_{src.parent.name}_{src.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src)
            paths.append(link)
        per_chunk = [[d] for d in sorted({p.parent for p in paths})]
        names = ["reference_fp32", "ours_fp32", "ours_bf16", "ours_onnx_int8"]
        os.environ["BIOMEDCLIP_CACHE"] = str(Path(tmp) / "cache")
        t = time.perf_counter()
        try:  # one-off export + quantisation, cached for the timed runs
            Encoder(ours, settings=EncoderSettings(backend="onnx-int8"))
        except ConfigError as e:
            print(f"skipping onnx-int8: {e}")
            names.remove("ours_onnx_int8")
        export_s = time.perf_counter() - t
        seconds = dict.fromkeys(names, 0.0)
        emb: dict[str, dict[str, np.ndarray]] = {k: {} for k in names}
        # warm-up (first-call allocations) on a few images, not timed
        reference_loop(oc, oc_pre, paths[:4], 4)
        for c, dirs in enumerate(per_chunk):
            chunk_paths = sorted(p for d in dirs for p in d.iterdir())
            order = names[c % len(names) :] + names[: c % len(names)]
            for name in order:
                t = time.perf_counter()
                if name == "reference_fp32":
                    vecs = reference_loop(oc, oc_pre, chunk_paths, args.batch_size)
                    ids = [str(p) for p in chunk_paths]
                else:
                    onnx = name == "ours_onnx_int8"
                    cfg = EmbedConfig(
                        batch_size=args.batch_size,
                        num_workers=args.workers,
                        precision="fp32" if onnx else name.split("_")[1],
                        backend="onnx-int8" if onnx else "torch",
                        progress=False,
                    )
                    src = sources.image_files(chunk_paths)
                    res = embed_source(ours, pre, tok, src, cfg)
                    assert not res.failures, res.failures
                    ids, vecs = res.ids, res.embeddings
                seconds[name] += time.perf_counter() - t
                emb[name].update(zip(ids, vecs))
            print(f"chunk {c + 1}/{chunks}: {len(chunk_paths)} images, order {order}", flush=True)
    keys = sorted(emb["reference_fp32"])
    mats = {k: np.stack([emb[k][i] for i in keys]) for k in names}
    d_fp32 = float(np.abs(mats["ours_fp32"] - mats["reference_fp32"]).max())
    cos = {k: float((mats[k] * mats["ours_fp32"]).sum(1).min()) for k in names[2:]}
    ref_s = seconds["reference_fp32"]
    result = {
        "images": n,
        "batch_size": args.batch_size,
        "chunks": chunks,
        "workers": EmbedConfig(num_workers=args.workers).workers(),
        "onnx_int8_export_s": round(export_s, 1) if "ours_onnx_int8" in names else None,
        "variants": {},
    }
    print(f"{n} real JPEGs (SLAKE, VQA-RAD, LC25000), batch {args.batch_size}")
    for k in names:
        result["variants"][k] = {
            "seconds": round(seconds[k], 3),
            "images_per_s": round(n / seconds[k], 2),
            "speedup_vs_reference": round(ref_s / seconds[k], 3),
        }
        print(
            f"{k:>15}: {seconds[k]:7.1f} s  {n / seconds[k]:6.2f} img/s  "
            f"speed-up {ref_s / seconds[k]:5.2f}x"
        )
    result["max_abs_diff_fp32_vs_reference"] = d_fp32
    for k, v in cos.items():
        result[f"min_cosine_{k.removeprefix('ours_')}_vs_fp32"] = v
    result["targets"] = {"fp32_speedup_min": 1.0, "fast_path_speedup": 1.5, "min_cosine": 0.999}
    print(
        f"max|d| ours fp32 vs reference {d_fp32:.2e}; min cosine vs fp32: "
        + ", ".join(f"{k} {v:.6f}" for k, v in cos.items())
    )
    if "ours_onnx_int8" in names:
        print(f"onnx-int8 one-off export + quantisation (not in the timings): {export_s:.1f} s")
    print(f"wrote {write_result('end_to_end', {'quick': args.quick, **result})}")


if __name__ == "__main__":
    main()
