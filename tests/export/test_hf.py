"""``export hf`` at the full architecture: transformers loads it and gives the project's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.export.conftest import assert_equal_embeddings, export_once, unit

pytestmark = pytest.mark.slow

# The model card's widget examples (the hub README's `widget:` block: image, candidate labels; the
# widget prompts with the pipeline's default "This is a photo of {}."). The third widget image is a
# Wikimedia chest X-ray that is not among the shared example images: chest_X-ray.jpg stands in.
WIDGET = [
    (
        "squamous_cell_carcinoma_histopathology.jpeg",
        ["adenocarcinoma histopathology", "squamous cell carcinoma histopathology"],
    ),
    (
        "adenocarcinoma_histopathology.jpg",
        ["adenocarcinoma histopathology", "squamous cell carcinoma histopathology"],
    ),
    (
        "chest_X-ray.jpg",
        [
            "left-sided pleural effusion chest x-ray",
            "right-sided pleural effusion chest x-ray",
            "normal chest x-ray",
        ],
    ),
]
PIPELINE_TEMPLATE = "This is a photo of {}."


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory, full_model_dir):
    return export_once(tmp_path_factory, "hf", str(full_model_dir))


@pytest.fixture(scope="module")
def hf(hf_export):
    from biomedclip.export.to_hf import load_hf

    return load_hf(hf_export.directory)


def test_folder_layout_and_manifest(hf_export, full_model_dir):
    from biomedclip.checkpoint.integrity import sha256_file

    d = hf_export.directory
    names = {p.name for p in d.iterdir()}
    assert {
        "config.json",
        "modeling_biomedclip.py",
        "image_processing_biomedclip.py",
        "preprocessing_biomedclip.py",
        "preprocessor_config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "export_manifest.json",
    } <= names
    assert not [p for p in d.parent.iterdir() if "_partial_" in p.name]  # staging removed
    config = json.loads((d / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_biomedclip.BiomedCLIPModel"
    modeling = (d / "modeling_biomedclip.py").read_text()
    assert "biomedclip" not in {
        line.split()[1] for line in modeling.splitlines() if line.startswith(("import ", "from "))
    }
    manifest = json.loads((d / "export_manifest.json").read_text())
    assert manifest["source"]["sha256"] == sha256_file(
        full_model_dir / "open_clip_model.safetensors"
    )
    assert manifest["parity"]["fp32"]["image"]["max_abs_diff"] <= 1e-5
    assert manifest["parity"]["fp32"]["text"]["max_abs_diff"] <= 1e-5
    assert manifest["files"]["model.safetensors"]["bytes"] > 700e6


def test_image_and_text_features_equal(hf, full_model, example_pils, prompts, reference):
    model, processor, tokenizer = hf
    ours = torch.stack([full_model.preprocess(im) for im in example_pils])
    pixels = processor(images=example_pils, return_tensors="pt")["pixel_values"]
    assert torch.equal(pixels, ours)  # the image processor is the eval transform, bit for bit
    batch = tokenizer(prompts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    ours_ids = full_model.tokenizer(prompts)
    assert torch.equal(batch["input_ids"], ours_ids.input_ids)
    with torch.inference_mode():
        image = model.get_image_features(pixels)
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
        few = {k: v[:5] for k, v in batch.items()}
        out = model(**few, pixel_values=pixels[:3])
    assert_equal_embeddings(reference["images"], image.numpy())
    assert_equal_embeddings(reference["texts"], text.numpy())
    expected = full_model.logit_scale.exp().item() * unit(image[:3]) @ unit(text[:5]).T
    np.testing.assert_allclose(out.logits_per_image.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(out.logits_per_text, out.logits_per_image.T)


def test_vision_model_tokens(hf, hf_export, full_model, example_pils):
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    model, processor, _ = hf
    pixels = processor(images=example_pils[:2], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = model.vision_model(pixels, output_hidden_states=True)
        feats, tokens = full_model.encode_image(pixels, return_tokens=True)
    assert out.last_hidden_state.shape == (2, 197, 768)
    assert len(out.hidden_states) == 13 and out.hidden_states[-2].shape == (2, 197, 768)
    torch.testing.assert_close(out.last_hidden_state, tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.image_embeds, feats, rtol=1e-5, atol=1e-5)
    # the vision-only model loads from the same folder without the text weights
    cls = get_class_from_dynamic_module(
        "modeling_biomedclip.BiomedCLIPVisionModel", str(hf_export.directory)
    )
    vision = cls.from_pretrained(str(hf_export.directory)).eval()
    assert not any(n.startswith("text.") for n, _ in vision.named_parameters())
    with torch.inference_mode():
        alone = vision(pixels, output_hidden_states=True)
    torch.testing.assert_close(alone.hidden_states[-2], out.hidden_states[-2])


def test_pipeline_equals_classify(hf_export, full_model_dir, hub_dir, capsys):
    from transformers import pipeline

    from biomedclip.cli.main import main

    images = hub_dir / "example_data" / "biomed_image_classification_example_data"
    clf = pipeline(
        "zero-shot-image-classification", model=str(hf_export.directory), trust_remote_code=True
    )
    by_labels: dict[tuple[str, ...], list[str]] = {}  # one classify run per label set
    for name, labels in WIDGET:
        by_labels.setdefault(tuple(labels), []).append(name)
    checked = 0
    for labels, names in by_labels.items():
        capsys.readouterr()
        argv = ["classify", *(str(images / n) for n in names), "--labels", ", ".join(labels)]
        argv += ["--template", PIPELINE_TEMPLATE, "--model", str(full_model_dir), "--json"]
        assert main([*argv, "--top-k", str(len(labels))]) == 0
        printed = json.loads(capsys.readouterr().out)
        results = printed["results"] if isinstance(printed, dict) else printed
        for name, result in zip(names, results, strict=True):
            assert result["image"].endswith(name)
            expected = {t["label"]: t["prob"] for t in result["top"]}
            got = clf(str(images / name), candidate_labels=list(labels))
            assert {r["label"] for r in got} == expected.keys() == set(labels)
            for r in got:
                assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5), (name, r)
            checked += 1
    assert checked == len(WIDGET)
