"""How close each CPU path gets to the hardware: achieved GFLOP/s of the image tower vs the CPU's
nominal peak for the path's arithmetic (fp32, int8 or bf16).

FLOPs per image are counted by ``torch.utils.flop_counter`` on the full-size ViT-B/16 (random
weights; about 35 GFLOP). The nominal peak is cores x max clock x operations per cycle per core
for the widest unit the flags offer (fp32: 2 FMA ports x 8 lanes x 2 on AVX2, x 16 lanes on
AVX-512; int8: AVX2 vpmaddubsw 64, AVX-VNNI 128, AVX512-VNNI 256, AMX-INT8 2048 ops; bf16:
AVX512-BF16 128, AMX-BF16 1024 ops; without native bf16 the fp32 peak): a rough upper bound, not
a promise. The clock is lscpu's "CPU max MHz"; a VM without it reports the current (base) clock,
so a boosting CPU can exceed "100 %". Paths as in benchmarks/_cpu_paths.py, timed interleaved (median) on real images.

    python benchmarks/cpu_limit.py [--quick] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cpu_paths  # noqa: E402
from _bench import interleaved, summarise, write_result  # noqa: E402
from _images import real_jpegs  # noqa: E402
from _reference import SHARED  # noqa: E402
from biomedclip.config import ModelConfig  # noqa: E402
from biomedclip.embedding import cpu_features  # noqa: E402
from biomedclip.model import BiomedCLIP  # noqa: E402
from biomedclip.tokenizer import Tokenizer  # noqa: E402
from biomedclip.transforms import eval_transform  # noqa: E402


def max_ghz() -> float | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"CPU max MHz:\s*([\d.]+)", out)
        if m:
            return float(m.group(1)) / 1000
    except (OSError, subprocess.CalledProcessError):
        pass
    try:  # a VM without a max clock: the current one
        text = Path("/proc/cpuinfo").read_text()
        return float(re.search(r"cpu MHz\s*:\s*([\d.]+)", text).group(1)) / 1000
    except (OSError, AttributeError):
        return None


def ops_per_cycle(flags: frozenset[str]) -> dict[str, int]:
    fp32 = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    if "amx_int8" in flags:
        int8 = 2048
    elif "avx512_vnni" in flags:
        int8 = 256
    elif "avx_vnni" in flags:
        int8 = 128
    else:
        int8 = 64 if "avx2" in flags else 16
    bf16 = 1024 if "amx_bf16" in flags else 128 if "avx512_bf16" in flags else fp32
    return {"fp32": fp32, "int8": int8, "bf16": bf16}


def arithmetic(encoder) -> str:
    """The arithmetic of an encoder's image tower (auto: of its choice)."""
    label = encoder.label
    return "int8" if "int8" in label else "bf16" if "bf16" in label else "fp32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 images, 3 repetitions")
    ap.add_argument("--batch-size", type=int, default=None)
    _cpu_paths.add_arguments(ap)
    args = ap.parse_args()
    bs = args.batch_size or (8 if args.quick else 16)
    repeats = 3 if args.quick else 5
    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.biomedclip()).eval()
    model.tokenizer = Tokenizer.from_pretrained(SHARED / "biomedclip_hub")  # int8 text calibration
    pre = eval_transform(model.config.preprocess)
    pixels = torch.stack([pre(Image.open(p)) for p in real_jpegs(bs)])
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.encode_image(pixels[:1])
    gflop = counter.get_total_flops() / 1e9
    calibration = [str(p) for p in real_jpegs(bs + 32)[bs:]]
    encoders, built = _cpu_paths.cpu_paths(model, calibration, args)
    timings = interleaved(
        {n: (lambda e=e: e.encode_pixels(pixels)) for n, e in encoders.items()}, repeats
    )
    rows = summarise(timings, "ours_fp32", items=bs)
    flags = cpu_features.cpu_flags()
    cores, ghz = torch.get_num_threads(), max_ghz()
    per_cycle = ops_per_cycle(flags)
    peaks = {k: cores * ghz * v for k, v in per_cycle.items()} if ghz else {}
    print(f"{cpu_features.cpu_model()} ({cpu_features.cpu_kind()}), {cores} threads, {ghz} GHz")
    print(f"image tower: {gflop:.1f} GFLOP per image; nominal peaks GFLOP/s: {peaks}")
    result = {"batch_size": bs, "repeats": repeats, "gflop_per_image": round(gflop, 2)}
    result |= {"ghz": ghz, "threads": cores, "ops_per_cycle": per_cycle, "peak_gflops": peaks}
    result["paths"] = {}
    for name, r in rows.items():
        achieved = r["items_per_s"] * gflop
        kind = arithmetic(encoders[name])
        share = achieved / peaks[kind] if peaks else None
        result["paths"][name] = {**r, "gflops": round(achieved, 1), "arithmetic": kind,
                                 "share_of_peak": None if share is None else round(share, 3)}  # fmt: skip
        pct = f"{100 * share:5.1f} % of {kind} peak" if share is not None else ""
        print(f"{name:>26}: {r['items_per_s']:6.2f} img/s {achieved:8.1f} GFLOP/s {pct}")
    result["one_off_build_s"] = built
    print(f"wrote {write_result('cpu_limit' + ('_quick' if args.quick else ''), result)}")


if __name__ == "__main__":
    main()
