"""Issue 9: one encoding path. The library and the CLI give the same answers, every command takes
the medical-image options, ``--precision`` means autocast everywhere, and resumed jobs complete."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import biomedclip
from biomedclip.embedding import EmbedConfig, Encoder, EncoderSettings, embed_to_dataset, sources
from biomedclip.imaging import ReadOptions
from tests.conftest import run_main
from tests.imaging.conftest import slide_levels  # noqa: F401 - fixture
from tests.imaging.helpers import dicom_file

LABELS = "adenocarcinoma histopathology, brain mri, chest x ray"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return biomedclip.load(tiny_model_dir)


def test_the_library_classifies_a_slide_as_the_cli_does(capsys, tiny, tiny_model_dir, slide_levels):  # noqa: F811
    path, _ = slide_levels
    code, out, _ = run_main(
        capsys, "classify", path, "--labels", LABELS, "--model", tiny_model_dir,
        "--magnification", "10", "--tile-size", "112", "--json",
    )  # fmt: skip
    assert code == 0
    (cli,) = json.loads(out)["results"]
    model, _, _ = tiny
    read = ReadOptions(mode=None, magnification=10, tile_size=112, max_tiles=256)
    api = biomedclip.zero_shot(model, path, LABELS.split(","), read=read)
    assert len(api.probs) == 1  # one answer for the slide: the mean over its tissue tiles
    slide = api.inputs[0]["slide"]
    assert slide["tiles"] == cli["tiles"] >= 4 and slide["level"] == cli["level"] == 1
    by_label = dict(zip([lb.strip() for lb in LABELS.split(",")], api.probs[0].tolist()))
    for item in cli["top"]:
        assert by_label[item["label"]] == pytest.approx(item["prob"], abs=1e-6)
    # the defaults too: a slide given to zero_shot is tiled, not shrunk to a thumbnail
    default = biomedclip.zero_shot(model, [path], LABELS.split(","))
    assert "slide" in default.inputs[0] and default.inputs[0]["slide"]["tiles"] > 1


def test_embed_takes_the_medical_image_options(capsys, tiny_model_dir, tmp_path):
    multi = dicom_file("SC_rgb_rle_2frame.dcm")
    each, mean = tmp_path / "each.json", tmp_path / "mean.json"
    args = ("--frames", "all", "--model", tiny_model_dir, "--no-progress")
    assert run_main(capsys, "embed", multi, "--parts", "each", "--out", each, *args)[0] == 0
    assert run_main(capsys, "embed", multi, "--out", mean, *args)[0] == 0
    rows = json.loads(each.read_text())["items"]
    assert [r["id"] for r in rows] == [f"{multi}#frame=0", f"{multi}#frame=1"]
    (avg,) = json.loads(mean.read_text())["items"]
    expected = np.mean([r["embedding"] for r in rows], axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(avg["embedding"], expected, atol=1e-6)
    # a CT window changes what the model sees, so the embedding changes
    ct = dicom_file("CT_small.dcm")
    lung, plain = tmp_path / "lung.npy", tmp_path / "plain.npy"
    base = ("--model", tiny_model_dir, "--no-progress")
    assert run_main(capsys, "embed", ct, "--window", "lung", "--out", lung, *base)[0] == 0
    assert run_main(capsys, "embed", ct, "--out", plain, *base)[0] == 0
    assert float(np.load(lung)[0] @ np.load(plain)[0]) < 0.99999


def test_precision_means_autocast_in_every_command(capsys, tiny_model_dir, tmp_path):
    from biomedclip.cli import common
    from biomedclip.cli.main import build_parser
    from biomedclip.embedding import encoder

    assert common.PRECISIONS == encoder.PRECISIONS and common.BACKENDS == encoder.BACKENDS
    parser = build_parser()
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 30), "red").save(img)
    for argv in (
        ["classify", str(img), "--labels", "a, b", "--dtype", "bf16"],
        ["embed", str(img), "--precision", "bf16"],
    ):
        args = parser.parse_args(argv)
        assert args.precision == "bf16"
        assert common.settings_from_args(args).precision == "bf16"
    model, _, _ = common.load_from_args(parser.parse_args(["info", "--model", str(tiny_model_dir)]))
    assert model.dtype == torch.float32  # weights stay fp32; precision is the encoder's autocast
    code, _, err = run_main(
        capsys,
        "classify",
        img,
        "--labels",
        "a, b",
        "--precision",
        "fp16",
        "--model",
        tiny_model_dir,
    )
    assert code == 2 and "fp16 is for CUDA" in err


def test_a_resumed_job_embeds_the_captions_of_images_written_before_the_kill(
    tiny, tmp_path, monkeypatch
):
    model, pre, tok = tiny
    items = []
    for i, color in enumerate(["red", "green", "blue", "white"]):
        p = tmp_path / f"{color}.png"
        Image.new("RGB", (32, 32), color).save(p)
        items.append(sources.Item(f"im{i}", path=str(p), text=f"a {color} square"))
    source = sources.ListSource(items, True, True, description="pairs")
    out = tmp_path / "emb"
    cfg = EmbedConfig(batch_size=2, num_workers=0, modality="both", progress=False)
    calls = {"n": 0}
    real = Encoder.encode_tokens

    def dies_on_second_text_batch(self, ids, mask):
        calls["n"] += 1
        if calls["n"] == 2:  # the image rows of the 2nd batch are written, its texts are not
            raise KeyboardInterrupt
        return real(self, ids, mask)

    monkeypatch.setattr(Encoder, "encode_tokens", dies_on_second_text_batch)
    with pytest.raises(KeyboardInterrupt):
        embed_to_dataset(model, pre, tok, source, out, cfg)
    monkeypatch.setattr(Encoder, "encode_tokens", real)
    embed_to_dataset(model, pre, tok, source, out, cfg)
    from biomedclip.embedding import read_embeddings

    _, _, table = read_embeddings(out)
    rows = table.select(["id", "modality"]).to_pylist()
    pairs = sorted((r["id"], r["modality"]) for r in rows)
    assert pairs == sorted((f"im{i}", m) for i in range(4) for m in ("image", "text"))


def test_encoder_inputs_failures_and_classifier(tiny, tmp_path):
    model, pre, tok = tiny
    enc = Encoder(model, settings=EncoderSettings(batch_size=2))
    path = tmp_path / "a.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(path)
    bad = b"\xff\xd8\xff\xe0 definitely not a jpeg"
    r = enc.encode_images([path, path.read_bytes(), Image.open(path), bad], ids=list("abcd"))
    assert r.ids == ["a", "b", "c"] and r.input_index.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(r.embeddings[0], r.embeddings[1])
    np.testing.assert_allclose(r.embeddings[0], r.embeddings[2], atol=1e-6)
    assert [f.id for f in r.failures] == ["d"] and "<image #3>" in r.failures[0].error
    assert r.ok.tolist() == [True, True, True, False]
    t = enc.encode_texts(["chest x ray", "   ", "brain mri scan"])
    assert t.ids == ["0", "2"] and [f.id for f in t.failures] == ["1"]
    norms = np.linalg.norm(t.embeddings, axis=1)
    np.testing.assert_allclose(norms, 1, atol=1e-5)
    w = enc.classifier(["brain mri", "chest x ray"], ["a photo of {}", "{} scan"])
    prompts = [
        "a photo of brain mri",
        "brain mri scan",
        "a photo of chest x ray",
        "chest x ray scan",
    ]
    with torch.inference_mode():
        e = model.encode_text(tok(prompts), normalize=True).reshape(2, 2, -1).mean(1)
    torch.testing.assert_close(w, torch.nn.functional.normalize(e, dim=-1), rtol=0, atol=1e-6)
