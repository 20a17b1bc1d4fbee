"""Zero-shot API: labels, templates, ensembles and probabilities, checked by hand computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import biomedclip
from biomedclip.errors import InputError
from biomedclip.zeroshot import (
    MODEL_CARD_TEMPLATES,
    PAPER_TEMPLATES,
    build_classifier,
    parse_labels,
    resolve_templates,
)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return biomedclip.load(tiny_model_dir)


def test_shipped_templates():
    assert PAPER_TEMPLATES == ("this is an image of {}", "{} presented in image", "a photo of {}")
    assert resolve_templates(None) == MODEL_CARD_TEMPLATES == ("this is a photo of {}",)
    assert resolve_templates("paper") == PAPER_TEMPLATES
    assert resolve_templates("a scan of {}") == ("a scan of {}",)
    with pytest.raises(InputError, match="placeholder"):
        resolve_templates(["no placeholder"])


def test_labels_refused():
    assert parse_labels(" chest X-ray , brain MRI ") == ["chest X-ray", "brain MRI"]
    with pytest.raises(InputError, match="no labels"):
        parse_labels([])
    with pytest.raises(InputError, match="label #2 is empty"):
        parse_labels("a, ,b")
    with pytest.raises(InputError, match="duplicate"):
        parse_labels(["a", "a"])


@torch.inference_mode()
def test_ensemble_is_mean_of_normalised_prompt_embeddings(loaded):
    model, _, tok = loaded
    labels = ["red circle", "blue square"]
    clf = build_classifier(model, tok, labels, "paper")
    for i, label in enumerate(labels):
        b = tok([t.format(label) for t in PAPER_TEMPLATES])
        e = F.normalize(model.encode_text(b.input_ids, b.attention_mask), dim=-1).mean(0)
        assert torch.allclose(clf[i], F.normalize(e, dim=-1), atol=1e-6)


@torch.inference_mode()
def test_zero_shot_matches_manual_computation(loaded, example_images):
    model, pre, tok = loaded
    labels = ["chest x ray", "brain mri", "bone"]
    res = biomedclip.zero_shot(model, example_images, labels)
    assert res.probs.shape == (9, 3)
    assert torch.allclose(res.probs.sum(-1), torch.ones(9), atol=1e-5)
    from PIL import Image

    px = torch.stack([pre(Image.open(p)) for p in example_images])
    img = F.normalize(model.encode_image(px), dim=-1)
    b = tok([f"this is a photo of {lb}" for lb in labels])
    txt = F.normalize(model.encode_text(b.input_ids, b.attention_mask), dim=-1)
    manual = (model.logit_scale.exp() * img @ txt.T).softmax(-1)
    assert torch.allclose(res.probs, manual, atol=1e-5)
    top = res.top_k(2)
    assert len(top) == 9 and len(top[0]) == 2 and top[0][0][1] >= top[0][1][1]
    assert set(res.to_dicts()[0]) == set(labels)
    # a single path and a preprocessed tensor give the same answer
    single = biomedclip.zero_shot(model, example_images[0], labels)
    assert torch.allclose(single.probs[0], res.probs[0], atol=1e-6)
    tensor = biomedclip.zero_shot(model, px, labels)
    assert torch.allclose(tensor.probs, res.probs, atol=1e-6)


def test_unreadable_image_is_named(loaded, tmp_path):
    model, _, _ = loaded
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(biomedclip.errors.ImageError, match="broken.jpg"):
        biomedclip.zero_shot(model, [bad], ["a", "b"])
