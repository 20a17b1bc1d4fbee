"""Zero-shot evaluation equals open_clip's computation on the same (random) weights and prompts:
full architecture, the released config and tokenizer, the shared example images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchmarks._reference import build_reference, save_reference_checkpoint
from PIL import Image

import biomedclip
from biomedclip.embedding import Encoder
from biomedclip.eval.datasets.base import LabelledSet
from biomedclip.eval.features import compute_features
from biomedclip.eval.protocol import PAPER_DATASETS
from biomedclip.eval.zeroshot_eval import evaluate_zeroshot


@pytest.mark.slow
def test_zero_shot_equals_open_clip(hub_dir, example_images, tmp_path):
    ref, ref_pre, ref_tok = build_reference(tmp_path / "ref", seed=3, hub_dir=hub_dir)
    with torch.no_grad():
        ref.logit_scale.fill_(np.log(100.0))  # a trained model's temperature: sharp probabilities
    ckpt = save_reference_checkpoint(ref, tmp_path / "open_clip_pytorch_model.bin")
    model, preprocess, tokenizer = biomedclip.load(ckpt, tokenizer=hub_dir)
    spec = PAPER_DATASETS["lc25000_lung"]
    names = [*spec.classnames, "brain MRI", "chest X-ray"]
    labels = np.arange(len(example_images)) % len(names)
    ds = LabelledSet(
        "examples", "test", names, [p.name for p in example_images], labels, example_images
    )

    enc = Encoder(model, preprocess, tokenizer)
    feats = compute_features(enc, ds, None)
    result = evaluate_zeroshot(enc, feats, names, spec.templates, n_resamples=0)
    ours_w = enc.classifier(names, spec.templates).numpy()

    with torch.inference_mode():  # open_clip, the way its zero-shot classifier is built
        weights = []
        for name in names:
            t = F.normalize(
                ref.encode_text(ref_tok([tpl.format(name) for tpl in spec.templates])), dim=-1
            )
            weights.append(F.normalize(t.mean(0), dim=-1))
        w = torch.stack(weights)
        img = F.normalize(
            ref.encode_image(torch.stack([ref_pre(Image.open(p)) for p in example_images])), dim=-1
        )
        ref_probs = (ref.logit_scale.exp() * img @ w.T).softmax(-1).numpy()

    assert result.n == len(example_images) and not result.failures
    np.testing.assert_allclose(result.scores, ref_probs, atol=1e-4)
    assert (result.scores.argmax(1) == ref_probs.argmax(1)).all()
    assert result.metrics["acc1"] == pytest.approx(float(np.mean(ref_probs.argmax(1) == labels)))
    # random weights give near-uniform probabilities: the features and class weights must match too
    np.testing.assert_allclose(feats.embeddings, img.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_w, w.numpy(), atol=1e-5)
