"""Zero-shot top-1 agreement of every fast CPU path with fp32 (issue 25's accuracy gate).

The full-size model on random weights classifies the shared LC25000 lung images into the paper's
three classes (its templates). Random weights put most images near a tie, so the gate counts only
images whose fp32 top-1 margin (top-1 minus top-2 cosine) is >= 0.002: each path (its own image
and text towers) must agree with fp32's top-1 on >= 99 % of them. All images' agreement is
reported too. Paths as in benchmarks/_cpu_paths.py.

    python benchmarks/zeroshot_agreement.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cpu_paths  # noqa: E402
from _bench import write_result  # noqa: E402
from _reference import SHARED  # noqa: E402
from biomedclip.config import ModelConfig  # noqa: E402
from biomedclip.model import BiomedCLIP  # noqa: E402
from biomedclip.tokenizer import Tokenizer  # noqa: E402
from biomedclip.transforms import eval_transform  # noqa: E402

CLASSES = ["lung adenocarcinoma", "benign lung", "lung squamous cell carcinoma"]
TEMPLATES = ["this is an image of {}", "{} presented in image", "a photo of {}"]
MARGIN = 0.002
TARGET = 0.99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="images (default: all)")
    _cpu_paths.add_arguments(ap)
    args = ap.parse_args()
    paths = sorted((SHARED / "lc25000_lung").glob("*/*.jpeg"))
    paths = paths[:: max(1, len(paths) // args.limit)][: args.limit] if args.limit else paths
    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.biomedclip()).eval()
    model.tokenizer = Tokenizer.from_pretrained(SHARED / "biomedclip_hub")
    model.preprocess = eval_transform(model.config.preprocess)
    # int8 calibrated on images outside the evaluated set where there are any
    all_paths = sorted((SHARED / "lc25000_lung").glob("*/*.jpeg"))
    rest = [str(p) for p in all_paths if p not in set(paths)] or [str(p) for p in all_paths]
    encoders, built = _cpu_paths.cpu_paths(model, rest[::7][:32], args)
    scores = {}
    for name, enc in encoders.items():
        img = enc.encode_images(paths)
        assert not img.failures, img.failures[:1]
        scores[name] = img.embeddings @ enc.classifier(CLASSES, TEMPLATES).T.cpu().numpy()
        print(f"encoded {len(paths)} images with {name}", flush=True)
    ref = torch.from_numpy(scores["ours_fp32"])
    top2 = ref.topk(2, dim=1).values
    confident = (top2[:, 0] - top2[:, 1]) >= MARGIN
    top1 = ref.argmax(1)
    result = {"images": len(paths), "confident_images": int(confident.sum()), "paths": {}}
    print(f"{len(paths)} images, {int(confident.sum())} with fp32 margin >= {MARGIN}")
    for name, s in scores.items():
        agree = torch.from_numpy(s).argmax(1) == top1
        conf = float(agree[confident].float().mean()) if confident.any() else None
        result["paths"][name] = {
            "agreement_all": round(float(agree.float().mean()), 4),
            "agreement_confident": None if conf is None else round(conf, 4),
            "passes": conf is None or conf >= TARGET,
        }
        print(f"{name:>26}: all {float(agree.float().mean()):.3f}  confident {conf}")
    result |= {"margin": MARGIN, "target": TARGET, "one_off_build_s": built}
    print(f"wrote {write_result('zeroshot_agreement', result)}")


if __name__ == "__main__":
    main()
