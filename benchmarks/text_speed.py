"""Text encoding speed: ours vs open_clip on the same weights and texts, in one process.

Two workloads of 128 texts (32 with --quick; one batch for the reference): short zero-shot prompts (<= 16 tokens)
and caption-length passages of real PMC text (60-120 tokens). The reference pads every text to 256
tokens (its tokenizer's fixed context); ours goes through the one encoding engine
(``Encoder.encode_texts``: texts sorted by length, each batch padded only to its longest text, with
the attention mask). Timings include tokenisation. Both sides are warmed up, their repetitions
interleaved (benchmarks/_bench.py); the medians, the speed-up and the max |difference| of the
L2-normalised embeddings are reported.

The CPU paths time the same texts too: torch bf16 autocast, OpenVINO fp32 and int8 (NNCF,
calibrated on real images and the bundled prompts; dynamic text length) and, where native, OpenVINO
bf16; each one's min cosine to our fp32 is reported (``--no-cpu-paths`` leaves them out).

    python benchmarks/text_speed.py [--quick] [--no-cpu-paths]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, scratch_dir, summarise, write_result  # noqa: E402
from _images import real_jpegs  # noqa: E402
from _reference import build_reference, ours_from_reference  # noqa: E402
from _texts import caption_texts, short_prompts  # noqa: E402
from biomedclip.embedding import Encoder, EncoderSettings  # noqa: E402


def reference_encode(oc_model, oc_tokenizer, texts: list[str]) -> np.ndarray:
    with torch.inference_mode():
        return oc_model.encode_text(oc_tokenizer(texts), normalize=True).numpy()


def ours_encode(enc: Encoder, texts: list[str]) -> np.ndarray:
    r = enc.encode_texts(texts)
    assert not r.failures
    out = np.empty_like(r.embeddings)
    out[r.input_index] = r.embeddings
    return out


def bench(name, texts, oc, oc_tok, enc, tok, repeats: int, others=None) -> dict:
    n_tok = tok.count_tokens(texts)
    variants = {
        "reference": lambda: reference_encode(oc, oc_tok, texts),
        "ours": lambda: ours_encode(enc, texts),
    }
    for key, other in (others or {}).items():
        variants[key] = lambda e=other: ours_encode(e, texts)
    t = interleaved(variants, repeats)
    d = float(np.abs(t.outputs["reference"] - t.outputs["ours"]).max())
    rows = summarise(t, "reference", items=len(texts))
    for key in others or {}:
        cos = (t.outputs[key] * t.outputs["ours"]).sum(1).min()
        rows[key]["min_cosine_vs_fp32"] = float(cos)
        print(
            f"{name:>9}: {key:>20} {rows[key]['median_s'] * 1000:8.1f} ms | speed-up "
            f"{rows[key]['speedup_vs_reference']:6.2f}x | min cosine vs fp32 {cos:.6f}",
            flush=True,
        )
    speedup = rows["ours"]["speedup_vs_reference"]
    print(
        f"{name:>9}: {len(texts)} texts, {min(n_tok)}-{max(n_tok)} tokens | reference "
        f"{rows['reference']['median_s'] * 1000:8.1f} ms | ours {rows['ours']['median_s'] * 1000:8.1f}"
        f" ms | speed-up {speedup:6.2f}x | max|d| normalised {d:.2e}",
        flush=True,
    )
    return {
        "texts": len(texts),
        "tokens_min": min(n_tok),
        "tokens_max": max(n_tok),
        "tokens_mean": round(sum(n_tok) / len(n_tok), 1),
        "variants": rows,
        "speedup": speedup,
        "max_abs_diff_normalized": d,
    }


def cpu_text_paths(model, tok) -> dict:
    """The engine's other text paths (torch bf16, OpenVINO fp32 / int8 / bf16 where native)."""
    import os

    from biomedclip.embedding import cpu_features
    from biomedclip.errors import ConfigError

    os.environ["BIOMEDCLIP_CACHE"] = scratch_dir("bench_cache_")
    cal = [str(p) for p in real_jpegs(32)]
    todo = {"ours_bf16": {"precision": "bf16"}, "ours_openvino_fp32": {"backend": "openvino"}}
    todo["ours_openvino_int8"] = {"backend": "openvino", "precision": "int8", "calibration": cal}
    if cpu_features.native_bf16():
        todo["ours_openvino_bf16"] = {"backend": "openvino", "precision": "bf16"}
    out = {}
    for key, kw in todo.items():
        try:
            s = EncoderSettings(text_batch_size=128, num_workers=0, **kw)
            out[key] = Encoder(model, tokenizer=tok, settings=s)
        except ConfigError as e:
            print(f"skipping {key}: {e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="32 texts per workload and 3 repetitions (not 128, 7)"
    )
    ap.add_argument("--texts", type=int, default=None, help="texts per workload (at most 128)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--no-cpu-paths", action="store_true", help="only ours fp32 vs the reference")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        oc, _, oc_tok = build_reference(tmp)
        ours, _, tok = ours_from_reference(oc, tmp)
    enc = Encoder(ours, tokenizer=tok, settings=EncoderSettings("fp32", text_batch_size=128))
    others = {} if args.no_cpu_paths else cpu_text_paths(ours, tok)
    repeats = 3 if args.quick else 7
    n = args.texts or (32 if args.quick else 128)
    prompts, captions = short_prompts(tok)[:n], caption_texts(tok)[:n]
    results = {
        "repeats": repeats,
        "short_prompts": bench("prompts", prompts, oc, oc_tok, enc, tok, repeats, others),
        "captions": bench("captions", captions, oc, oc_tok, enc, tok, repeats, others),
        "targets": {"short_prompts_speedup": 20.0, "captions_speedup": 2.0, "max_abs_diff": 1e-5},
    }
    out = write_result("text_speed" + ("_quick" if args.quick else ""), results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
