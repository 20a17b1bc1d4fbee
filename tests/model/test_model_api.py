"""The model's public API: token batches, tokens out, embeddings in, declared fields, no cycles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from benchmarks._reference import reference_dir, save_reference_checkpoint

import biomedclip
from biomedclip.config import ModelConfig
from biomedclip.model import BiomedCLIP

TEXTS = ["a red circle on the left", "chest x ray", "brain mri scan with a large tumor"]


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer):
    torch.manual_seed(0)
    model = BiomedCLIP(ModelConfig.tiny(vocab_size=tiny_tokenizer.vocab_size)).eval()
    return model, tiny_tokenizer


def test_encode_text_accepts_a_token_batch(tiny):
    model, tok = tiny
    batch = tok(TEXTS)
    with torch.inference_mode():
        direct = model.encode_text(batch.input_ids, batch.attention_mask)
        from_batch = model.encode_text(batch)  # the open_clip habit
    assert torch.equal(direct, from_batch)


def test_return_tokens_gives_the_same_features_and_every_token(tiny):
    model, tok = tiny
    size = model.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    batch = tok(TEXTS)
    with torch.inference_mode():
        plain = model.encode_image(pixels, normalize=True)
        feats, tokens = model.encode_image(pixels, normalize=True, return_tokens=True)
        n_patches = (size // model.visual.trunk.patch_embed.patch_size[0]) ** 2
        assert tokens.shape == (2, 1 + n_patches, model.visual.trunk.num_features)
        torch.testing.assert_close(feats, plain, rtol=0, atol=1e-6)
        # the [CLS] token through the projection is the image embedding
        torch.testing.assert_close(model.visual.head(tokens[:, 0]), model.encode_image(pixels))
        t_plain = model.encode_text(batch)
        t_feats, states = model.encode_text(batch, return_tokens=True)
    assert states.shape[:2] == batch.input_ids.shape
    torch.testing.assert_close(t_feats, t_plain, rtol=0, atol=1e-6)


def test_inputs_embeds_replace_the_word_embeddings(tiny):
    model, tok = tiny
    batch = tok(TEXTS)
    words = model.text.transformer.get_input_embeddings()
    with torch.inference_mode():
        ref = model.encode_text(batch)
        via_embeds = model.encode_text(
            None, batch.attention_mask, inputs_embeds=words(batch.input_ids)
        )
    torch.testing.assert_close(via_embeds, ref, rtol=0, atol=1e-6)


def test_loaded_model_declares_what_it_carries(tiny_model_dir):
    model, preprocess, tokenizer = biomedclip.load(tiny_model_dir)
    assert model.tokenizer is tokenizer and model.preprocess is preprocess
    assert model.load_info.weights and model.load_info.sha256
    fresh = BiomedCLIP(ModelConfig.tiny())
    assert fresh.load_info.source == "random init" and fresh.load_info.sha256 is None
    assert fresh.tokenizer is None and fresh.preprocess is None


def test_model_and_checkpoint_do_not_import_the_factory():
    code = (
        "import sys, biomedclip.checkpoint; print('biomedclip.model' in sys.modules);"
        "import biomedclip.model; print('biomedclip.factory' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_cls_pooler_checkpoint_equals_open_clip(hub_dir, tmp_path):
    """A ``cls_pooler`` config embeds with BERT's pooler output, as open_clip does (it used to be
    accepted, its pooler weights dropped and the [CLS] state used instead)."""
    d = reference_dir(hub_dir, tmp_path / "ref")
    cfg_path = d / "open_clip_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_cfg"]["text_cfg"]["hf_pooler_type"] = "cls_pooler"
    cfg_path.write_text(json.dumps(cfg))
    import open_clip

    torch.manual_seed(1)
    ref, _, _ = open_clip.create_model_and_transforms(f"local-dir:{d}", pretrained_hf=False)
    ref, ref_tok = ref.eval(), open_clip.get_tokenizer(f"local-dir:{d}")
    assert any(k.startswith("text.transformer.pooler.") for k in ref.state_dict())
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_reference_checkpoint(ref, ckpt / "open_clip_pytorch_model.bin")
    cfg["model_cfg"]["text_cfg"].update(proj="mlp", pooler_type="cls_pooler")
    (ckpt / "open_clip_config.json").write_text(json.dumps(cfg))
    ours, _, tok = biomedclip.load(ckpt, tokenizer=hub_dir)
    assert ours.config.text.pooler == "cls_pooler"
    prompts = ["this is a photo of brain MRI", "Axial CT of the abdomen shows a hypodense lesion."]
    with torch.inference_mode():
        expected = ref.encode_text(ref_tok(prompts))
        got = ours.encode_text(tok(prompts))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
