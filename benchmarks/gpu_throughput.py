"""GPU image throughput of the full architecture at batch 256: fp32, bf16, bf16 + torch.compile.

Same weights as open_clip's model (the reference's fp32 figure is printed alongside). Needs CUDA;
without a GPU it says so, records the skip in the results file, and exits 0.

    python benchmarks/gpu_throughput.py [--quick] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import build_reference, ours_from_reference, write_result  # noqa: E402
from biomedclip.embedding.encoder import Encoder, EncoderSettings  # noqa: E402


def throughput(fn, x: torch.Tensor, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn(x)
    torch.cuda.synchronize()
    return x.shape[0] * iters / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available on this machine: GPU throughput not measured (skipped).")
        write_result("gpu_throughput", {"skipped": "no CUDA device"})
        return 0
    iters, warmup = (5, 2) if args.quick else (20, 5)
    with tempfile.TemporaryDirectory() as tmp:
        oc, _, _ = build_reference(tmp)
        ours, _, _ = ours_from_reference(oc, tmp)
    oc, ours = oc.cuda().eval(), ours.cuda().eval()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224, device="cuda")
    results = {}

    def ref_fp32(t):
        with torch.inference_mode():
            return F.normalize(oc.encode_image(t), dim=-1)

    variants = {
        "reference_fp32": ref_fp32,
        "ours_fp32": Encoder(ours, EncoderSettings("fp32")).encode_images_tensor,
        "ours_bf16": Encoder(ours, EncoderSettings("bf16")).encode_images_tensor,
        "ours_bf16_compile": Encoder(
            ours, EncoderSettings("bf16", compile=True)
        ).encode_images_tensor,
    }
    base = variants["ours_fp32"](x)
    for name, fn in variants.items():
        w = warmup + (3 if "compile" in name else 0)  # compile happens in the first calls
        ips = throughput(fn, x, iters, w)
        cos = float(F.cosine_similarity(fn(x).float(), base, dim=-1).min())
        results[name] = {"images_per_s": round(ips, 1), "min_cosine_vs_fp32": cos}
        print(f"{name:>18}: {ips:9.1f} img/s   min cosine vs fp32 {cos:.6f}", flush=True)
    out = write_result(
        "gpu_throughput", {"batch_size": args.batch_size, "iters": iters, "variants": results}
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
