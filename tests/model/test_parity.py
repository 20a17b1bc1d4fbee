"""The core proof: our model equals open_clip's on the same random weights (full architecture)."""

from __future__ import annotations

import pytest
import torch
from benchmarks._reference import build_reference, save_reference_checkpoint
from PIL import Image

import biomedclip
from biomedclip.config import ModelConfig
from biomedclip.model import BiomedCLIP

TOL = 1e-5
PROMPTS = [
    "this is a photo of adenocarcinoma histopathology",
    "this is a photo of brain MRI",
    "chest X-ray",
    "Axial contrast-enhanced CT of the abdomen shows a 3-cm hypodense lesion in segment VII of the "
    "liver (arrow), consistent with a simple cyst.",
    "Is there evidence of an aortic aneurysm?",
    "H&amp;E stain, ×400: atypical glands infiltrating the stroma",
]


@pytest.fixture(scope="module")
def pair(hub_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    ref, ref_pre, ref_tok = build_reference(tmp, hub_dir=hub_dir)
    ckpt = save_reference_checkpoint(ref, tmp / "reference" / "open_clip_pytorch_model.bin")
    ours, pre, tok = biomedclip.load(ckpt, tokenizer=hub_dir)
    return ref, ref_pre, ref_tok, ours, pre, tok


def test_released_layout():
    sd = BiomedCLIP(ModelConfig.biomedclip()).state_dict()
    assert len(sd) == 351
    assert sum(v.numel() for v in sd.values()) == 195_902_721
    assert sd["visual.head.proj.weight"].shape == (512, 768)
    assert sd["text.proj.0.weight"].shape == (640, 768)
    assert sd["text.proj.2.weight"].shape == (512, 640)
    assert sd["logit_scale"].shape == ()


def test_same_state_dict_keys_as_reference(pair):
    ref, *_, ours, _, _ = pair
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(ref_sd) == set(our_sd)
    for k in ref_sd:
        assert ref_sd[k].shape == our_sd[k].shape, k
        assert torch.equal(ref_sd[k], our_sd[k]), k


@torch.inference_mode()
def test_image_text_features_and_logits_match(pair, example_images):
    ref, ref_pre, ref_tok, ours, pre, tok = pair
    pil = [Image.open(p) for p in example_images]  # as the model card notebook does
    ref_px = torch.stack([ref_pre(im) for im in pil])
    our_px = torch.stack([pre(im) for im in pil])
    assert (ref_px - our_px).abs().max() <= 1e-6

    ref_img = ref.encode_image(ref_px)
    our_img = ours.encode_image(our_px)
    assert (ref_img - our_img).abs().max() <= TOL

    ref_txt = ref.encode_text(ref_tok(PROMPTS))  # padded to 256 by the reference
    batch = tok(PROMPTS)  # padded to the longest prompt only
    assert batch.input_ids.shape[1] < 256
    our_txt = ours.encode_text(batch.input_ids, batch.attention_mask)
    assert (ref_txt - our_txt).abs().max() <= TOL

    ref_logits = ref.logit_scale.exp() * (
        torch.nn.functional.normalize(ref_img, dim=-1)
        @ torch.nn.functional.normalize(ref_txt, dim=-1).T
    )
    our_logits = ours.logits(our_img, our_txt)
    assert (ref_logits - our_logits).abs().max() <= TOL * 100  # logits are scaled by 100
    i, t, scale = ours(our_px, batch.input_ids, batch.attention_mask)
    assert torch.allclose(scale * i @ t.T, our_logits, atol=1e-4)


@torch.inference_mode()
def test_reference_padding_rule_is_respected(pair):
    """Without a mask, ids padded to 256 give the same features (mask derived from the pad id)."""
    ref, _, ref_tok, ours, _, _ = pair
    ids = ref_tok(PROMPTS[:2])
    assert (ours.encode_text(ids) - ref.encode_text(ids)).abs().max() <= TOL


def test_meta_device_load_equals_eager_build(pair, tmp_path):
    """Loading builds the model on the meta device; buffers must be restored exactly."""
    *_, ours, _, _ = pair
    eager = BiomedCLIP(ModelConfig.biomedclip())
    eager.load_state_dict(ours.state_dict())
    eager.eval()
    for (name, a), (_, b) in zip(sorted(eager.named_buffers()), sorted(ours.named_buffers())):
        assert torch.equal(a, b), name
