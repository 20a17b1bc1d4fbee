"""Training-time evaluation encodes through the one Encoder and keeps its numbers: the metrics
equal a direct computation with the model's towers (the formula it used before)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from biomedclip.config import ModelConfig
from biomedclip.eval.retrieval import retrieval_metrics
from biomedclip.model import BiomedCLIP
from biomedclip.train.config import DataSection
from biomedclip.train.data import eval_batches
from biomedclip.train.evaluate import evaluate
from biomedclip.train.shapes import LABELS, shapes_tokenizer
from biomedclip.transforms import eval_transform
from biomedclip.zeroshot import MODEL_CARD_TEMPLATES


def _direct(model, tok, data, spec, batch_size, labels):
    """The metrics computed by calling the towers directly, batch by batch."""
    scale = model.logit_scale.exp().float()
    imgs, txts, truth, losses, weights = [], [], [], [], []
    for b in eval_batches(
        data, spec, eval_transform(model.config.preprocess), tok, 32, batch_size, 10_000
    ):
        img = model.encode_image(b["pixels"], normalize=True).float()
        txt = model.encode_text(b["input_ids"], b["attention_mask"], normalize=True).float()
        logits = scale * img @ txt.T
        t = torch.arange(len(img))
        losses.append(float((F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2))
        weights.append(len(img))
        imgs.append(img)
        txts.append(txt)
        truth += [labels.index(x) for x in b["labels"]]
    img_all, txt_all = torch.cat(imgs), torch.cat(txts)
    out = {"val_loss": sum(v * w for v, w in zip(losses, weights)) / sum(weights)}
    out.update({f"val_{k}": v for k, v in retrieval_metrics(img_all, txt_all).items()})
    prompts = [t.format(label) for label in labels for t in MODEL_CARD_TEMPLATES]
    pt = tok(prompts, warn=False)
    cls = model.encode_text(pt.input_ids, pt.attention_mask, normalize=True)
    cls = F.normalize(cls.reshape(len(labels), len(MODEL_CARD_TEMPLATES), -1).mean(1), dim=-1)
    pred = (scale * img_all @ cls.T).argmax(-1).tolist()
    out["val_zeroshot_accuracy"] = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    return out


@torch.no_grad()
def test_evaluate_equals_the_direct_computation(shapes_data):
    tok = shapes_tokenizer()
    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.tiny(vocab_size=tok.vocab_size)).train()
    data = DataSection(workers=0)
    labels = list(LABELS)
    got = evaluate(model, tok, data, shapes_data["val"], 24, 10_000, "fp32", labels)
    assert model.training  # the training mode is restored
    model.eval()
    want = _direct(model, tok, data, shapes_data["val"], 24, labels)
    assert got.pop("val_bad_samples") == 0
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
