"""Text encoding speed: ours vs open_clip on the same weights and texts, in one process.

Two workloads of 128 texts (one batch for the reference): short zero-shot prompts (<= 16 tokens)
and caption-length passages of real PMC text (60-120 tokens). The reference pads every text to 256
tokens (its tokenizer's fixed context); ours (`biomedclip embed`'s text path) sorts texts by length
and pads each batch only to its longest text, with the attention mask. Timings include tokenisation.
Prints the speed-up and the max |difference| of the L2-normalised embeddings (and of the raw ones).

    python benchmarks/text_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import build_reference, ours_from_reference, write_result  # noqa: E402
from _texts import caption_texts, short_prompts  # noqa: E402
from biomedclip.embedding.batching import text_batches  # noqa: E402


def reference_encode(oc_model, oc_tokenizer, texts: list[str], normalize: bool) -> np.ndarray:
    with torch.inference_mode():
        tokens = oc_tokenizer(texts)
        feats = oc_model.encode_text(tokens, normalize=normalize)
    return feats.numpy()


def ours_encode(
    model,
    tokenizer,
    texts: list[str],
    normalize: bool,
    batch_size: int,
    token_budget: int | None = None,
) -> np.ndarray:
    """Length-bucketed batches (as the engine does), results back in input order."""
    items = [_Item(str(i), t) for i, t in enumerate(texts)]
    batches, failures = text_batches(tokenizer, items, batch_size, token_budget)
    assert not failures
    out = np.empty((len(texts), model.config.embed_dim), np.float32)
    with torch.inference_mode():
        for b in batches:
            feats = model.encode_text(b.input_ids, b.attention_mask, normalize=normalize)
            out[[int(it.id) for it in b.items]] = feats.numpy()
    return out


class _Item:
    __slots__ = ("id", "text", "path")

    def __init__(self, id: str, text: str):
        self.id, self.text, self.path = id, text, None


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench(name, texts, oc, oc_tok, ours, tok, ref_repeats, our_repeats) -> dict:
    """The reference's first timed run also gives its outputs (it is slow: no separate warm-up)."""
    n_tok = tok.count_tokens(texts)
    our_raw = ours_encode(ours, tok, texts, False, len(texts), None)  # warm-up + accuracy
    ref_t, our_t, ref_raw = [], [], None
    for _ in range(max(ref_repeats, our_repeats)):  # interleaved: fair under background load
        if len(ref_t) < ref_repeats:
            t = time.perf_counter()
            out = reference_encode(oc, oc_tok, texts, False)
            ref_t.append(time.perf_counter() - t)
            ref_raw = out if ref_raw is None else ref_raw
        if len(our_t) < our_repeats:
            our_t += timed(lambda: ours_encode(ours, tok, texts, False, len(texts), None), 1)
    d_raw = float(np.abs(ref_raw - our_raw).max())
    d_norm = float(np.abs(_normalize(ref_raw) - _normalize(our_raw)).max())
    ref_s, our_s = statistics.median(ref_t), statistics.median(our_t)
    res = {
        "texts": len(texts),
        "tokens_min": min(n_tok),
        "tokens_max": max(n_tok),
        "tokens_mean": round(sum(n_tok) / len(n_tok), 1),
        "reference_s": round(ref_s, 4),
        "ours_s": round(our_s, 4),
        "reference_texts_per_s": round(len(texts) / ref_s, 1),
        "ours_texts_per_s": round(len(texts) / our_s, 1),
        "speedup": round(ref_s / our_s, 2),
        "max_abs_diff_normalized": d_norm,
        "max_abs_diff_raw": d_raw,
        "reference_runs_s": [round(t, 4) for t in ref_t],
        "ours_runs_s": [round(t, 4) for t in our_t],
    }
    print(
        f"{name:>9}: {len(texts)} texts, {min(n_tok)}-{max(n_tok)} tokens | reference "
        f"{ref_s * 1000:8.1f} ms | ours {our_s * 1000:8.1f} ms | speed-up {ref_s / our_s:6.2f}x | "
        f"max|d| normalised {d_norm:.2e}, raw {d_raw:.2e}",
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        oc, _, oc_tok = build_reference(tmp)
        ours, _, tok = ours_from_reference(oc, tmp)
    results = {}
    prompts = short_prompts(tok)
    captions = caption_texts(tok)
    reps = (1, 3) if args.quick else (2, 5)
    results["short_prompts"] = bench("prompts", prompts, oc, oc_tok, ours, tok, *reps)
    results["captions"] = bench("captions", captions, oc, oc_tok, ours, tok, *reps)
    results["targets"] = {
        "short_prompts_speedup": 20.0,
        "captions_speedup": 2.0,
        "max_abs_diff": 1e-5,
    }
    out = write_result("text_speed", {"quick": args.quick, **results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
