"""The fusion model, frozen / partial / full towers, the feature cache, saving, loading and ask."""

from __future__ import annotations

import pytest
import torch

from biomedclip.config import ModelConfig
from biomedclip.errors import CheckpointError, InputError
from biomedclip.model import BiomedCLIP
from biomedclip.transforms import eval_transform
from biomedclip.vqa.answers import AnswerVocab
from biomedclip.vqa.config import FusionConfig, VQAConfig
from biomedclip.vqa.data import QAItem
from biomedclip.vqa.features import FeatureCache, cache_key
from biomedclip.vqa.model import VQAModel, load_vqa_model
from biomedclip.vqa.predict import ask, predict
from biomedclip.vqa.trainer import optimizer_groups

FUSION = FusionConfig(layers=2, hidden=32, heads=2, dropout=0.0)
VOCAB = AnswerVocab(["yes", "no", "lung", "liver"])


@pytest.fixture()
def tiny(tiny_tokenizer):
    torch.manual_seed(0)
    backbone = BiomedCLIP(ModelConfig.tiny(vocab_size=tiny_tokenizer.vocab_size))
    return VQAModel(backbone, FUSION, VOCAB), tiny_tokenizer


def test_forward_shapes_and_token_api(tiny):
    model, tok = tiny
    model.eval()  # no dropout: the two paths must agree
    batch = tok(["is the lung normal", "which organ"])
    pixels = torch.randn(2, 3, 32, 32)
    logits = model(batch.input_ids, batch.attention_mask, pixels=pixels)
    assert logits.shape == (2, 4)
    tokens = model.image_tokens(pixels)
    assert tokens.shape == (2, 1 + 16, 64)  # [CLS] + (32/8)^2 patches, ViT width 64
    again = model(batch.input_ids, batch.attention_mask, image_tokens=tokens)
    torch.testing.assert_close(again, logits)
    # padding does not change a question's answer scores
    single = tok(["which organ"])
    one = model(single.input_ids, single.attention_mask, image_tokens=tokens[1:])
    torch.testing.assert_close(one, logits[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("image", "text"), [("frozen", "full"), ("partial", "frozen")])
def test_tuning_modes_and_lr_groups(tiny, image, text):
    model, tok = tiny
    model.configure(image, 1, text, 1)
    cfg = VQAConfig()
    groups = {g["name"]: g for g in optimizer_groups(model, cfg)}
    assert groups["head"]["lr_scale"] == 50.0 and groups["fusion"]["lr_scale"] == 5.0
    assert groups["encoders"]["lr_scale"] == 1.0
    vis = model.backbone.visual.trunk
    assert any(p.requires_grad for p in vis.parameters()) == (image != "frozen")
    if image == "partial":
        assert all(p.requires_grad for p in vis.blocks[-1].parameters())
        assert not any(p.requires_grad for p in vis.blocks[0].parameters())
    txt = model.backbone.text.transformer
    assert all(p.requires_grad for p in txt.parameters()) == (text == "full")
    batch = tok(["is the lung normal"])
    loss = model(batch.input_ids, batch.attention_mask, pixels=torch.randn(1, 3, 32, 32)).sum()
    loss.backward()
    assert (vis.blocks[-1].attn.qkv.weight.grad is not None) == (image != "frozen")
    assert model.head[0].weight.grad is not None


def test_feature_cache(tiny, tmp_path, example_images):
    model, _ = tiny
    pre = eval_transform(model.backbone.config.preprocess)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths = [str(p) for p in example_images[:3]] + [str(bad)]
    cache = FeatureCache(tmp_path / "cache", model.backbone, pre)
    tokens = cache.tokens(paths, batch_size=2, part_size=2)
    assert sorted(tokens) == sorted(paths[:3]) and str(bad) in cache.failures
    assert "bad.png" in cache.failures[str(bad)]
    direct = model.image_tokens(
        torch.stack([pre(__import__("biomedclip").load_image(paths[0], mode=None))])
    )
    torch.testing.assert_close(tokens[paths[0]], direct[0])
    # a second cache reads the parts from disk and encodes nothing
    again = FeatureCache(tmp_path / "cache", model.backbone, pre)
    again._encode = None  # would fail if called
    torch.testing.assert_close(again.tokens(paths)[paths[2]], tokens[paths[2]])
    # other weights -> another key
    other = BiomedCLIP(model.backbone.config)
    assert cache_key(other) != cache_key(model.backbone)


def test_save_load_predict_ask(tiny, tmp_path, example_images):
    model, tok = tiny
    model.eval()
    model.save_pretrained(tmp_path / "m", tok)
    loaded, pre, tok2 = load_vqa_model(tmp_path / "m")
    assert loaded.vocab.answers == VOCAB.answers
    image = str(example_images[0])
    a = ask(model, eval_transform(model.backbone.config.preprocess), tok, image, "is it lung", 3)
    b = ask(loaded, pre, tok2, image, "is it lung", 3)
    assert a.answers == b.answers and a.probabilities == pytest.approx(b.probabilities)
    assert len(b.answers) == 3 and 0 < sum(b.probabilities) <= 1 + 1e-6
    with pytest.raises(InputError, match="empty"):
        ask(loaded, pre, tok2, image, "  ")
    items = [
        QAItem("1", image, "is it lung", "yes", "yes", "CLOSED", "PRES", "t"),
        QAItem(
            "2", str(tmp_path / "missing.png"), "is it lung", "yes", "yes", "CLOSED", "PRES", "t"
        ),
    ]
    answers, failures = predict(loaded, tok2, pre, items, batch_size=2)
    assert answers[0].answers[0] == b.answers[0] and answers[1] is None
    assert str(tmp_path / "missing.png") in failures
    with pytest.raises(CheckpointError, match="not a VQA model"):
        load_vqa_model(tmp_path)


def test_ask_dicom(tiny):
    pydicom = pytest.importorskip("pydicom")
    model, tok = tiny
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    answer = ask(model, eval_transform(model.backbone.config.preprocess), tok, path, "is it lung")
    assert set(answer.answers) <= set(VOCAB.answers) and len(answer.answers) == 4
