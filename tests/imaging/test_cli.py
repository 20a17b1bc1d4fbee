"""``classify`` on DICOM / slides and ``show`` previews, with the tiny model (image size 32)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

import biomedclip
from biomedclip.cli.show import model_view
from biomedclip.config import PreprocessConfig
from biomedclip.imaging import read_image
from tests.conftest import run_main
from tests.imaging.helpers import dicom_file

LABELS = "chest ct, brain mri, histopathology"


def test_classify_ct_with_lung_window(capsys, tiny_model_dir):
    ct = dicom_file("CT_small.dcm")
    code, out, _ = run_main(
        capsys,
        "classify",
        ct,
        "--labels",
        LABELS,
        "--window",
        "lung",
        "--model",
        tiny_model_dir,
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    (res,) = data["results"]
    assert res["image"] == str(ct) and len(res["top"]) == 3
    # the same numbers as windowing by hand, then the model's preprocess
    model, preprocess, tokenizer = biomedclip.load(tiny_model_dir)
    ds = pydicom.dcmread(ct)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = -600.0, 1500.0
    y = np.clip(((hu - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255)
    y = np.where(hu <= c - 0.5 - (w - 1) / 2, 0, np.where(hu > c - 0.5 + (w - 1) / 2, 255, y))
    image = Image.fromarray(np.rint(y).astype(np.uint8), "L")
    probs = biomedclip.zero_shot(model, [image], data["labels"]).to_dicts()[0]
    for item in res["top"]:
        assert item["prob"] == pytest.approx(probs[item["label"]], abs=1e-5)
    # a different window changes what the model sees
    code, out2, _ = run_main(
        capsys,
        "classify",
        ct,
        "--labels",
        LABELS,
        "--window",
        "bone",
        "--model",
        tiny_model_dir,
        "--json",
    )
    assert json.loads(out2)["results"][0]["top"] != res["top"]


def test_classify_frames_and_bad_files(capsys, tiny_model_dir, tmp_path):
    multi = dicom_file("SC_rgb_rle_2frame.dcm")
    report = dicom_file("rtplan.dcm")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    code, out, err = run_main(
        capsys,
        "classify",
        multi,
        report,
        empty,
        dicom_file("MR_small.dcm"),
        "--labels",
        LABELS,
        "--frames",
        "all",
        "--model",
        tiny_model_dir,
        "--json",
    )
    assert code == 1
    data = json.loads(out)
    assert [r["image"] for r in data["results"]] == [
        f"{multi} [frame 0]",
        f"{multi} [frame 1]",
        str(dicom_file("MR_small.dcm")),
    ]
    assert {e["image"] for e in data["errors"]} == {str(report), str(empty)}
    assert "no pixel data" in err and "empty" in err
    code, out, _ = run_main(
        capsys, "classify", multi, "--labels", LABELS, "--frames", "all", "--model", tiny_model_dir
    )
    assert code == 0 and "SC_rgb_rle_2frame.dcm [frame 1]" in out  # not eaten as rich markup


def test_classify_slide_aggregates_tiles(capsys, tiny_model_dir, slide_levels):
    path, _ = slide_levels
    code, out, _ = run_main(
        capsys,
        "classify",
        path,
        "--labels",
        LABELS,
        "--model",
        tiny_model_dir,
        "--magnification",
        "10",
        "--tile-size",
        "112",
        "--top-tiles",
        "3",
        "--json",
    )
    assert code == 0
    (res,) = json.loads(out)["results"]
    assert res["slide"] is True and res["level"] == 1 and res["tiles"] >= 4
    rec = read_image(path, magnification=10, tile_size=112, max_tiles=256, mode=None)
    model, preprocess, _ = biomedclip.load(tiny_model_dir)
    labels = [lb.strip() for lb in LABELS.split(",")]
    probs = biomedclip.zero_shot(model, rec.images, labels).probs
    mean = probs.mean(0)
    assert res["top"][0]["label"] == labels[int(mean.argmax())]
    assert res["top"][0]["prob"] == pytest.approx(float(mean.max()), abs=1e-5)
    best = int(mean.argmax())
    top = torch.topk(probs[:, best], 3).values.tolist()
    assert [t["prob"] for t in res["top_tiles"]] == pytest.approx(top, abs=1e-5)
    coords = {(it["x"], it["y"]) for it in rec.metadata["items"]}
    assert all((t["x"], t["y"]) in coords for t in res["top_tiles"])
    code, out, _ = run_main(
        capsys, "classify", path, "--labels", LABELS, "--model", tiny_model_dir, "--max-tiles", "4"
    )
    assert code == 0 and "slide, mean over tiles" in out and "top tiles" in out


def test_show_writes_what_the_model_sees(capsys, tmp_path, tiny_model_dir):
    ct = dicom_file("CT_small.dcm")
    out_png = tmp_path / "preview.png"
    code, out, _ = run_main(capsys, "show", ct, "--out", out_png, "--window", "lung")
    assert code == 0 and "C=-600 W=1500" in out
    written = Image.open(out_png)
    assert written.size == (224, 224) and written.mode == "RGB"
    expected = model_view(read_image(ct, mode=None, window="lung").images[0], PreprocessConfig())
    np.testing.assert_array_equal(np.asarray(written), np.asarray(expected))
    # the preprocess tensor, un-normalised, is the preview (up to 8-bit rounding)
    _, preprocess, _ = biomedclip.load(tiny_model_dir)
    small = tmp_path / "small.png"
    assert (
        run_main(capsys, "show", ct, "--out", small, "--window", "lung", "--model", tiny_model_dir)[
            0
        ]
        == 0
    )
    cfg = biomedclip.load_model(tiny_model_dir).config.preprocess
    t = preprocess(read_image(ct, mode=None, window="lung").images[0])
    un = t * torch.tensor(cfg.std)[:, None, None] + torch.tensor(cfg.mean)[:, None, None]
    png = torch.from_numpy(np.array(Image.open(small))).permute(2, 0, 1) / 255.0
    assert png.shape == un.shape == (3, 32, 32)
    assert (png - un).abs().max() < 1 / 255 + 1e-4
    # several frames -> a grid; errors exit 2 with a message
    grid_png = tmp_path / "grid.png"
    assert (
        run_main(
            capsys,
            "show",
            dicom_file("SC_rgb_rle_2frame.dcm"),
            "--out",
            grid_png,
            "--frames",
            "all",
            "--image-size",
            "64",
        )[0]
        == 0
    )
    assert Image.open(grid_png).size == (2 * 64 + 3 * 4, 64 + 2 * 4)
    code, _, err = run_main(capsys, "show", dicom_file("rtplan.dcm"), "--out", tmp_path / "x.png")
    assert code == 2 and "no pixel data" in err and not (tmp_path / "x.png").exists()
