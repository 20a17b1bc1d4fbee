"""GPU image throughput of the full architecture at batch 256: fp32, bf16, bf16 + torch.compile.

Same weights as open_clip's model (the reference's fp32 figure is measured alongside). Every
variant is warmed up and the repetitions are interleaved (benchmarks/_bench.py). Needs CUDA;
without a GPU it says so, records the skip in the results file, and exits 0.

    python benchmarks/gpu_throughput.py [--quick] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, summarise, write_result  # noqa: E402
from _reference import build_reference, ours_from_reference  # noqa: E402
from biomedclip.embedding import Encoder, EncoderSettings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    name = "gpu_throughput" + ("_quick" if args.quick else "")
    if not torch.cuda.is_available():
        print("CUDA is not available on this machine: GPU throughput not measured (skipped).")
        write_result(name, {"skipped": "no CUDA device"})
        return 0
    iters, warmup = (5, 2) if args.quick else (20, 5)
    with tempfile.TemporaryDirectory() as tmp:
        oc, _, _ = build_reference(tmp)
        ours, _, _ = ours_from_reference(oc, tmp)
    oc, ours = oc.cuda().eval(), ours.cuda().eval()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224, device="cuda")

    def ref_fp32():
        with torch.inference_mode():
            return F.normalize(oc.encode_image(x), dim=-1)

    encoders = {
        "ours_fp32": Encoder(ours, settings=EncoderSettings("fp32", batch_size=args.batch_size)),
        "ours_bf16": Encoder(ours, settings=EncoderSettings("bf16", batch_size=args.batch_size)),
        "ours_bf16_compile": Encoder(
            ours, settings=EncoderSettings("bf16", compile=True, batch_size=args.batch_size)
        ),
    }
    variants = {"reference_fp32": ref_fp32}
    variants.update({k: (lambda e=e: e.encode_pixels(x)) for k, e in encoders.items()})
    for _ in range(3):  # torch.compile compiles in its first calls: not part of any timing
        variants["ours_bf16_compile"]()
    timings = interleaved(variants, iters, warmup, sync=torch.cuda.synchronize)
    rows = summarise(timings, "reference_fp32", items=args.batch_size)
    base = timings.outputs["ours_fp32"]
    for k, out in timings.outputs.items():
        rows[k]["min_cosine_vs_fp32"] = float(F.cosine_similarity(out.float(), base, dim=-1).min())
        print(
            f"{k:>18}: {rows[k]['items_per_s']:9.1f} img/s  "
            f"x{rows[k]['speedup_vs_reference_fp32']:.2f} vs reference fp32  "
            f"min cosine vs fp32 {rows[k]['min_cosine_vs_fp32']:.6f}",
            flush=True,
        )
    out = write_result(name, {"batch_size": args.batch_size, "iters": iters, "variants": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
