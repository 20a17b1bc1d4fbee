"""ONNX runner vs the torch path: text and image throughput, fp32 and int8, in one process.

The same model (open_clip's BiomedCLIP with seeded random weights, loaded by us) is exported with
``biomedclip export onnx`` (fp32 + int8; the export time is reported) and then, on the same inputs
(real JPEGs from SLAKE / VQA-RAD / LC25000 decoded once to PIL; real short prompts), timed end to
end (preprocessing/tokenisation included) through:

- ``torch_fp32``: :class:`biomedclip.embedding.Encoder` (the engine ``biomedclip embed`` uses);
- ``onnx_fp32`` / ``onnx_int8``: :class:`biomedclip.onnx.OnnxBiomedCLIP` (no torch at inference).

Warm-up first, repetitions interleaved, medians reported with the ratio to ``torch_fp32``, the max
|difference| of the fp32 runner and the min cosine of the int8 runner to ``torch_fp32``. Both sides
use the same number of threads.

    python benchmarks/onnx_speed.py [--quick] [--images 32] [--texts 128]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, summarise, write_result  # noqa: E402  (first: load average)
from _images import real_jpegs  # noqa: E402
from _reference import build_reference, ours_from_reference  # noqa: E402
from _texts import short_prompts  # noqa: E402

VARIANTS = ("fp32", "int8")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _report(kind: str, n: int, variants: dict, repeats: int) -> dict:
    """Time the variants (interleaved), then add each one's accuracy against ``torch_fp32``."""
    timings = interleaved(variants, repeats)
    rows = summarise(timings, "torch_fp32", items=n)
    ref = _unit(timings.outputs["torch_fp32"])
    for name, row in rows.items():
        emb = _unit(timings.outputs[name])
        row["max_abs_diff_vs_torch_fp32"] = float(np.abs(emb - ref).max())
        row["min_cosine_vs_torch_fp32"] = float((emb * ref).sum(-1).min())
        print(
            f"{kind:6s} {name:11s} {row['items_per_s']:9.1f}/s  "
            f"x{row['speedup_vs_torch_fp32']:5.2f}  max|diff| "
            f"{row['max_abs_diff_vs_torch_fp32']:.2e}  min cos {row['min_cosine_vs_torch_fp32']:.5f}"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer inputs and repetitions")
    ap.add_argument("--images", type=int, default=None, help="images per run (default 32)")
    ap.add_argument("--texts", type=int, default=None, help="prompts per run (default 128)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-openvino", action="store_true", help="leave out `export openvino`")
    args = ap.parse_args()
    n_img = args.images or (8 if args.quick else 32)
    n_txt = args.texts or (64 if args.quick else 128)
    repeats = args.repeats or (2 if args.quick else 5)

    from PIL import Image

    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.export import export
    from biomedclip.onnx import OnnxBiomedCLIP

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        oc, _, _ = build_reference(tmp)
        model, _, tokenizer = ours_from_reference(oc, tmp)
        del oc
        images = [Image.open(p) for p in real_jpegs(n_img)]
        for im in images:
            im.load()
        texts = short_prompts(tokenizer, n_txt)
        t = time.perf_counter()
        export("onnx", model, Path(tmp) / "onnx", onnx_variants=("fp32", "int8"))
        export_s = time.perf_counter() - t
        runners = {v: OnnxBiomedCLIP(Path(tmp) / "onnx", v, threads=threads) for v in VARIANTS}
        if not args.no_openvino:  # `export openvino`, int8 calibrated on other real images
            t = time.perf_counter()
            cal = [str(p) for p in real_jpegs(n_img + 32)[n_img:]]
            export("openvino", model, Path(tmp) / "ov", probe_images=cal,
                   openvino_variants=("fp32", "int8"))  # fmt: skip
            print(
                f"export openvino (fp32 + int8, with parity check): {time.perf_counter() - t:.1f} s"
            )
            for v in ("openvino-fp32", "openvino-int8"):
                runners[v] = OnnxBiomedCLIP(Path(tmp) / "ov", v, threads=threads)

        enc = Encoder(model, settings=EncoderSettings(num_workers=0))

        image_variants = {"torch_fp32": lambda: enc.encode_images(images).per_input()[0]}
        text_variants = {"torch_fp32": lambda: enc.encode_texts(texts).per_input()[0]}
        for v, r in runners.items():
            key = v.replace("-", "_") if v.startswith("openvino") else f"onnx_{v}"
            image_variants[key] = lambda r=r: r.encode_images(images).embeddings
            text_variants[key] = lambda r=r: r.encode_texts(texts).embeddings
        print(f"export (fp32 + int8, both towers, with parity check): {export_s:.1f} s")
        rows = {
            "image": _report("image", n_img, image_variants, repeats),
            "text": _report("text", n_txt, text_variants, repeats),
        }
    out = write_result(
        "onnx_speed" + ("_quick" if args.quick else ""),
        {
            "inputs": {
                "images": n_img,
                "texts": n_txt,
                "text_tokens_mean": float(np.mean(tokenizer.count_tokens(texts))),
                "repeats": repeats,
                "threads": threads,
                "image_source": "SLAKE / VQA-RAD / LC25000 JPEGs, decoded to PIL once",
                "text_source": "real short prompts (benchmarks/_texts.py)",
            },
            "export_s": round(export_s, 1),
            "onnx_version": importlib.metadata.version("onnx"),
            "results": rows,
            "note": "end to end from decoded PIL images / raw strings",
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
