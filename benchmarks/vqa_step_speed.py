"""VQA training-step speed: cached frozen image features vs encoding the images every step.

Same model (full-size BiomedCLIP towers, the default 6-layer width-768 METER fusion, text tower
fine-tuned, image tower frozen), same optimizer, same batch of real VQA-RAD questions and images.
One step = forward, the BCE answer loss, backward and an AdamW update. ``cached``: the image tokens
come from a table computed once (what ``vqa train`` does with a frozen image tower); ``encoded``:
the frozen ViT runs on the pixels every step. Warm-up, interleaved repetitions, medians
(benchmarks/_bench.py). The accuracy check compares the two paths' answer logits in eval mode on
the same batch. The released weights cannot be downloaded here: the towers are randomly
initialised, which does not change the amount of compute.

    python benchmarks/vqa_step_speed.py [--batch-size 4] [--repeats 5] [--text full|frozen]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import interleaved, summarise, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--text", choices=["full", "frozen"], default="full", help="text tower")
    args = ap.parse_args()

    from biomedclip.config import ModelConfig
    from biomedclip.imaging import load_image
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer
    from biomedclip.transforms import eval_transform
    from biomedclip.vqa.answers import AnswerVocab
    from biomedclip.vqa.config import VQAConfig
    from biomedclip.vqa.data import load_vqa_rad
    from biomedclip.vqa.model import VQAModel
    from biomedclip.vqa.trainer import optimizer_groups, vqa_loss

    torch.manual_seed(0)
    items = load_vqa_rad(SHARED / "vqa_rad", "train")
    vocab = AnswerVocab.build([it.answer for it in items])
    batch = items[: args.batch_size]
    cfg = VQAConfig()
    tokenizer = Tokenizer.from_pretrained(SHARED / "biomedclip_hub", context_length=256)
    backbone = BiomedCLIP(ModelConfig.biomedclip())
    model = VQAModel(backbone, cfg.model.fusion, vocab)
    model.configure("frozen", 0, args.text, 0)
    opt = torch.optim.AdamW(optimizer_groups(model, cfg), lr=5e-6)
    pre = eval_transform(backbone.config.preprocess)
    pixels = torch.stack([pre(load_image(it.image, mode=None)) for it in batch])
    tb = tokenizer(
        [it.question for it in batch], context_length=cfg.model.fusion.max_question_tokens
    )
    targets = torch.tensor([vocab.index(it.answer) for it in batch])
    with torch.no_grad():
        table = model.image_tokens(pixels)  # the cache: computed once

    def step(**image):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = vqa_loss(model(tb.input_ids, tb.attention_mask, **image), targets, "bce")
        loss.backward()
        opt.step()
        return float(loss.detach())

    timings = interleaved(
        {
            "encoded": lambda: step(pixels=pixels),
            "cached": lambda: step(image_tokens=table[torch.arange(len(batch))]),
        },
        repeats=args.repeats,
    )
    model.eval()
    with torch.no_grad():
        a = model(tb.input_ids, tb.attention_mask, pixels=pixels)
        b = model(tb.input_ids, tb.attention_mask, image_tokens=model.image_tokens(pixels))
    summary = summarise(timings, "encoded", items=len(batch))
    result = {
        "what": "VQA training step (fwd + BCE + bwd + AdamW), full-size towers, frozen image "
        "tower, text tower + 6-layer fusion trained; cached image tokens vs encoding every step",
        "batch_size": len(batch),
        "text_tower": args.text,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "results": summary,
        "speedup_cached_over_encoded": summary["cached"]["speedup_vs_encoded"],
        "max_abs_logit_difference_cached_vs_encoded": float((a - b).abs().max()),
        "note": "random-init weights (released weights not downloadable here); the machine is "
        "shared with other agents: see load_average",
    }
    path = write_result("vqa_step_speed", result)
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "results",
                    "speedup_cached_over_encoded",
                    "max_abs_logit_difference_cached_vs_encoded",
                )
            },
            indent=1,
        )
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
