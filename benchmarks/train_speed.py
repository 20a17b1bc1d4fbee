"""Training-step speed: our step vs open_clip's, same model, weights, batch and precision.

One step = forward of both towers, the contrastive loss, backward and an AdamW update. Both
models hold identical weights (open_clip's model built offline from the released config; ours
loaded from its state dict). CPU section: the full architecture at a small batch, fp32, with
(a) the reference's inputs (text padded to 256 tokens) on both sides and (b) our data path's
inputs (text padded to the longest caption); memory is the activation memory autograd saves for
backward (exact, in one process; weights and optimizer state are the same on both sides). Every
case is warmed up (that step also measures the memory) and the timed steps are interleaved across
cases (benchmarks/_bench.py), medians reported. ``--quick`` keeps the first 4 blocks of both
towers (``--depth``) so that two models with AdamW state fit a small machine. GPU
section (CUDA only; skipped with a message otherwise): batch 256, bf16 autocast, samples/s, peak
allocated memory and model FLOPs utilisation (FLOPs counted with torch's FlopCounterMode).

    python benchmarks/train_speed.py [--quick] [--depth N] [--batch-size 4] [--gpu-batch-size 256]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, write_result  # noqa: E402
from _reference import build_reference, ours_from_reference  # noqa: E402
from biomedclip.train.gradcache import contrastive_backward  # noqa: E402
from biomedclip.train.loss import ClipLoss  # noqa: E402

CAPTIONS = [
    "Chest X-ray showing bilateral infiltrates consistent with pneumonia.",
    "Axial CT of the abdomen with a hypodense hepatic lesion.",
    "H&E stained section of lung adenocarcinoma, 20x.",
    "Brain MRI, T2-weighted, showing a periventricular white matter lesion.",
]
PEAK_TFLOPS_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


class SavedActivations:
    """Bytes of the tensors autograd saves for backward (activation memory; weights excluded).

    Weights, gradients and AdamW state are identical on both sides, so activation memory is what
    differs between the implementations; on CPU it is measured exactly this way, in one process.
    Tensors kept by gradient checkpointing's own hooks (recomputed later) are not counted.
    """

    def __init__(self, params):
        self.param_ptrs = {p.data_ptr() for p in params}
        self.bytes = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.param_ptrs and ptr not in self._seen:
            self._seen.add(ptr)
            self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def ours_step(model, opt, pixels, ids, mask, autocast):
    opt.zero_grad(set_to_none=True)
    contrastive_backward(
        model,
        {"pixels": pixels, "input_ids": ids, "attention_mask": mask},
        ClipLoss(),
        autocast=autocast,
    )
    opt.step()


def reference_step(model, loss_fn, opt, pixels, ids, autocast):
    opt.zero_grad(set_to_none=True)
    with autocast():
        out = model(pixels, ids)
        if isinstance(out, dict):
            img, txt, scale = out["image_features"], out["text_features"], out["logit_scale"]
        else:
            img, txt, scale = out[:3]
        loss = loss_fn(img.float(), txt.float(), scale.float())
    loss.backward()
    opt.step()


def build_pair(tmp: str, depth: int | None):
    import open_clip

    oc, _, oc_tok = build_reference(tmp, depth=depth)
    ours, _, tok = ours_from_reference(oc, tmp, depth=depth)
    return oc, oc_tok, ours, tok, open_clip


def with_checkpointing(model, step):
    """``step`` with gradient checkpointing on (off again afterwards: cases share the model)."""

    def run():
        model.set_grad_checkpointing(True)
        try:
            step()
        finally:
            model.set_grad_checkpointing(False)

    return run


def inputs(batch: int, oc_tok, tok, device):
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    ref_ids = oc_tok(texts).to(device)
    ref_mask = (ref_ids != 0).long()
    short = tok(texts)
    return pixels, ref_ids, ref_mask, short.input_ids.to(device), short.attention_mask.to(device)


def cpu_section(args) -> dict:
    torch.manual_seed(0)
    steps = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        oc, oc_tok, ours, tok, open_clip = build_pair(tmp, args.depth)
    oc.train()
    ours.train()
    pixels, ref_ids, ref_mask, ids, mask = inputs(args.batch_size, oc_tok, tok, "cpu")
    loss_fn = open_clip.loss.ClipLoss()
    none = contextlib.nullcontext
    rows = {}
    opt_ref = torch.optim.AdamW(oc.parameters(), lr=1e-6)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-6)
    cases = {
        "reference (open_clip), 256-token text": lambda: reference_step(
            oc, loss_fn, opt_ref, pixels, ref_ids, none
        ),
        "ours, same 256-token text": lambda: ours_step(
            ours, opt_ours, pixels, ref_ids, ref_mask, none
        ),
        "ours, text padded to longest (our data path)": lambda: ours_step(
            ours, opt_ours, pixels, ids, mask, none
        ),
    }

    cases["ours + gradient checkpointing, longest padding"] = with_checkpointing(
        ours, lambda: ours_step(ours, opt_ours, pixels, ids, mask, none)
    )
    memory = {}
    for (name, fn), model in zip(cases.items(), (oc, ours, ours, ours)):
        with SavedActivations(model.parameters()) as mem:
            fn()  # the warm-up step, which also measures the activation memory
        memory[name] = mem.bytes / 2**20
    timings = interleaved(cases, steps, warmup=0)
    for name in cases:
        sec = timings.median(name)
        rows[name] = {
            "samples_per_s": args.batch_size / sec,
            "step_s": sec,
            "step_runs_s": [round(t, 4) for t in timings.runs[name]],
            "activation_mib": memory[name],
        }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "batch_size": args.batch_size,
        "depth": args.depth or "full (12 + 12 blocks)",
        "precision": "fp32",
        "timed_steps_per_case": steps,
        "rows": rows,
        "process_peak_rss_gib": peak,
    }


def gpu_section(args) -> dict:
    if not torch.cuda.is_available():
        msg = "CUDA is not available: GPU section (batch 256, bf16, MFU) skipped."
        print(msg)
        return {"skipped": msg}
    from torch.utils.flop_counter import FlopCounterMode

    dev = torch.device("cuda")
    steps, warmup = (5, 2) if args.quick else (20, 5)
    with tempfile.TemporaryDirectory() as tmp:
        oc, oc_tok, ours, tok, open_clip = build_pair(tmp, None)
    oc, ours = oc.to(dev).train(), ours.to(dev).train()
    b = args.gpu_batch_size
    pixels, ref_ids, ref_mask, ids, mask = inputs(b, oc_tok, tok, dev)
    bf16 = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    loss_fn = open_clip.loss.ClipLoss()
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_TFLOPS_BF16.items() if k in name), None)
    rows = {}
    opt_ref = torch.optim.AdamW(oc.parameters(), lr=1e-6)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-6)
    cases = {
        "reference (open_clip), 256-token text": (
            lambda: reference_step(oc, loss_fn, opt_ref, pixels, ref_ids, bf16),
            ref_ids,
            ref_mask,
        ),
        "ours, same 256-token text": (
            lambda: ours_step(ours, opt_ours, pixels, ref_ids, ref_mask, bf16),
            ref_ids,
            ref_mask,
        ),
        "ours, text padded to longest": (
            lambda: ours_step(ours, opt_ours, pixels, ids, mask, bf16),
            ids,
            mask,
        ),
    }
    peak_mem = {}
    for label, (fn, _, _) in cases.items():  # warm-up, one case at a time: its peak memory
        torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        peak_mem[label] = torch.cuda.max_memory_allocated() / 2**30
    timings = interleaved(
        {k: v[0] for k, v in cases.items()}, steps, warmup=0, sync=torch.cuda.synchronize
    )
    for label, (_, t_ids, t_mask) in cases.items():
        sec = timings.median(label)
        with FlopCounterMode(display=False) as fc:
            ours.zero_grad()
            with bf16():
                img, txt, scale = ours(pixels[:8], t_ids[:8], t_mask[:8])
                ClipLoss()(img, txt, scale).backward()
        flops_per_sample = fc.get_total_flops() / 8
        achieved = flops_per_sample * b / sec
        rows[label] = {
            "samples_per_s": b / sec,
            "step_s": sec,
            "peak_memory_gib": peak_mem[label],
            "train_flops_per_sample": flops_per_sample,
            "mfu": achieved / peak if peak else None,
        }
    return {
        "device": name,
        "batch_size": b,
        "precision": "bf16 autocast",
        "rows": rows,
        "peak_flops": peak,
    }


def show(title: str, section: dict) -> None:
    if "rows" not in section:
        return
    print(f"\n{title}")
    ref = next(iter(section["rows"].values()))
    for name, r in section["rows"].items():
        mem = (
            f"activations {r['activation_mib']:7.0f} MiB"
            if "activation_mib" in r
            else f"peak {r['peak_memory_gib']:.1f} GiB, MFU "
            + (f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a")
        )
        print(
            f"  {name:48s} {r['samples_per_s']:8.2f} samples/s  x{r['samples_per_s'] / ref['samples_per_s']:.2f}  {mem}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    ap.add_argument("--batch-size", type=int, default=4, help="CPU batch (default 4)")
    ap.add_argument(
        "--depth",
        type=int,
        default=None,
        help="CPU section: keep the first N blocks of both towers (default: all; 4 with --quick)",
    )
    ap.add_argument("--gpu-batch-size", type=int, default=256)
    args = ap.parse_args()
    if args.quick and args.depth is None:
        args.depth = 4
    cpu = cpu_section(args)
    show(
        f"CPU, depth {cpu['depth']}, batch {cpu['batch_size']}, fp32 (one training step incl. "
        "AdamW), median of interleaved steps",
        cpu,
    )
    gpu = gpu_section(args)
    show(f"GPU {gpu.get('device')}, batch {gpu.get('batch_size')}, bf16", gpu)
    out = write_result("train_speed" + ("_quick" if args.quick else ""), {"cpu": cpu, "gpu": gpu})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
