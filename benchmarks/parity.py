"""Print the core parity figures: ours vs open_clip on the same random full-size weights.

    python benchmarks/parity.py [--shared ../shared/data]

Builds open_clip 3.x's BiomedCLIP offline (random weights), saves its state dict as the released
file layout, loads it with ``biomedclip.load``, and compares, on the 9 real example images and
real prompts: preprocessing, image features, text features and logits (fp32, CPU). Also reports
how many tokens each path spends on the prompts. An accuracy comparison (no timing); writes
benchmarks/results/parity.json with the machine, versions and load average (benchmarks/_bench.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._bench import write_result  # noqa: E402
from benchmarks._reference import build_reference, save_reference_checkpoint  # noqa: E402

import biomedclip  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    hub = Path(args.shared) / "biomedclip_hub"
    expected = json.loads((hub / "expected_zero_shot.json").read_text())
    images = [hub / expected["image_dir"] / n for n in expected["probabilities"]]
    prompts = [expected["template"] + label for label in expected["labels"]]
    vqa = json.loads((Path(args.shared) / "vqa_rad" / "testset.json").read_text())
    prompts += [q["question"] for q in vqa[:32]]
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        ref, ref_pre, ref_tok = build_reference(tmp, hub_dir=hub)
        ckpt = save_reference_checkpoint(
            ref, Path(tmp) / "reference" / "open_clip_pytorch_model.bin"
        )
        ours, pre, tok = biomedclip.load(ckpt, tokenizer=hub)
        pil = [Image.open(p) for p in images]
        ref_px = torch.stack([ref_pre(im) for im in pil])
        our_px = torch.stack([pre(im) for im in pil])
        ref_img, our_img = ref.encode_image(ref_px), ours.encode_image(our_px)
        ref_ids = ref_tok(prompts)
        batch = tok(prompts)
        ref_txt = ref.encode_text(ref_ids)
        our_txt = ours.encode_text(batch.input_ids, batch.attention_mask)
        nrm = torch.nn.functional.normalize
        ref_logits = ref.logit_scale.exp() * nrm(ref_img, dim=-1) @ nrm(ref_txt, dim=-1).T
        our_logits = ours.logits(our_img, our_txt)
        res = {
            "images": len(images),
            "prompts": len(prompts),
            "max_abs_diff": {
                "preprocess": float((ref_px - our_px).abs().max()),
                "image_features": float((ref_img - our_img).abs().max()),
                "text_features": float((ref_txt - our_txt).abs().max()),
                "logits": float((ref_logits - our_logits).abs().max()),
                "probs": float((ref_logits.softmax(-1) - our_logits.softmax(-1)).abs().max()),
            },
            "state_dict": {"tensors": len(ours.state_dict()), "parameters": ours.num_parameters()},
            "tokens_per_prompt": {"reference": ref_ids.shape[1], "ours": batch.input_ids.shape[1]},
        }
    print(json.dumps(res, indent=2))
    print(f"wrote {write_result('parity', res)}")
    ok = all(v <= 1e-5 for k, v in res["max_abs_diff"].items() if k not in ("logits",))
    ok = ok and res["max_abs_diff"]["logits"] <= 1e-3
    print("PARITY OK" if ok else "PARITY FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
