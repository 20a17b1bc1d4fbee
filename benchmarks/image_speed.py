"""Image-tower speed: ours (fp32 exact; bf16, ONNX int8, OpenVINO fp32/int8/bf16, auto) vs open_clip fp32.

One batch of real preprocessed images (SLAKE / VQA-RAD / LC25000) goes through the reference's
``encode_image`` and through our :class:`~biomedclip.embedding.encoder.Encoder` (the path
`biomedclip embed` uses) at fp32, bf16 and with the onnx-int8 backend (ONNX Runtime, int8 weights;
its one-off export + quantisation time is reported separately). Same weights. Prints images/s, the speed-up over the reference fp32,
the max |difference| at fp32 and the minimum cosine similarity of the fast path to fp32.

The CPU paths (benchmarks/_cpu_paths.py) include OpenVINO int8 run both as one batched request
(sync) and over an async queue with throughput streams, and ``auto`` (its choice and measured
cosine are recorded); int8 is calibrated on 32 real images disjoint from the timed batch.
``--torch-bf16-study`` adds bf16 weights (cast) and torch.compile over autocast (issue 25 item 4).
The result names the CPU kind and flags (``machine.cpu``).

    python benchmarks/image_speed.py [--quick] [--batch-size 32] [--torch-bf16-study]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cpu_paths  # noqa: E402
from _bench import interleaved, summarise, write_result  # noqa: E402
from _images import real_jpegs  # noqa: E402
from _reference import build_reference, ours_from_reference  # noqa: E402
from biomedclip.embedding.encoder import cpu_has_native_bf16  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller batch, fewer repetitions")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--accuracy-images",
        type=int,
        default=64,
        help="real images on which every fast path's min cosine to fp32 is checked (default: 64)",
    )
    _cpu_paths.add_arguments(ap)
    args = ap.parse_args()
    bs = args.batch_size or (16 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        oc, oc_pre, _ = build_reference(tmp)
        ours, pre, _ = ours_from_reference(oc, tmp)
    pixels = torch.stack([oc_pre(Image.open(p)) for p in real_jpegs(bs)])
    assert torch.equal(pixels, torch.stack([pre(Image.open(p)) for p in real_jpegs(bs)]))

    def ref_fp32():
        with torch.inference_mode():
            return F.normalize(oc.encode_image(pixels), dim=-1)

    variants = {"reference_fp32": ref_fp32}
    calibration = [str(p) for p in real_jpegs(bs + 32)[bs:]]  # disjoint from the timed batch
    encoders, built = _cpu_paths.cpu_paths(ours, calibration, args)
    for name, enc in encoders.items():
        variants[name] = lambda enc=enc: enc.encode_pixels(pixels)

    timings = interleaved(variants, repeats)  # warm-up (outputs kept) + interleaved repetitions
    outputs, rows = timings.outputs, summarise(timings, "reference_fp32", items=bs)
    ref = outputs["reference_fp32"]
    result = {
        "batch_size": bs,
        "repeats": repeats,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "one_off_build_s": built,
        "variants": {},
    }
    print(
        f"batch {bs} real images, median of {repeats} interleaved runs "
        f"(native bf16: {cpu_has_native_bf16()})"
    )
    for name in variants:
        out = outputs[name]
        cos = F.cosine_similarity(out, outputs["ours_fp32"], dim=-1)
        r = {
            **rows[name],
            "max_abs_diff_vs_reference": float((out - ref).abs().max()),
            "min_cosine_vs_fp32": float(cos.min()),
        }
        result["variants"][name] = r
        print(
            f"{name:>26}: {r['items_per_s']:7.2f} img/s  "
            f"speed-up {r['speedup_vs_reference_fp32']:5.2f}x  "
            f"max|d| vs reference {r['max_abs_diff_vs_reference']:.2e}  "
            f"min cosine vs fp32 {r['min_cosine_vs_fp32']:.6f}"
        )
    # accuracy of the fast paths on more real images than one timed batch
    acc = torch.stack([pre(Image.open(p)) for p in real_jpegs(args.accuracy_images)])
    chunks = list(torch.split(acc, bs))
    exact = torch.cat([encoders["ours_fp32"].encode_pixels(c) for c in chunks])
    result["accuracy_images"] = len(acc)
    for name, enc in encoders.items():
        if name == "ours_fp32":
            continue
        out = torch.cat([enc.encode_pixels(c) for c in chunks])
        cos = float(F.cosine_similarity(out, exact, dim=-1).min())
        result["variants"][name]["min_cosine_vs_fp32_accuracy_set"] = cos
        print(f"{name:>26}: min cosine vs fp32 over {len(acc)} real images {cos:.6f}")
    print(f"one-off builds (s; cached afterwards) and auto's choice: {built}")
    result["targets"] = {
        "fp32_speedup_min": 1.0,
        "fast_path_speedup_no_native_bf16": 2.0,
        "auto_speedup_amx": 5.0,
        "min_cosine": 0.999,
    }
    name = "image_speed" + ("_quick" if args.quick else "")
    print(f"wrote {write_result(name, {'quick': args.quick, **result})}")


if __name__ == "__main__":
    main()
