"""Heatmaps over a real pyramidal slide and the Slides page of the browser app (Chromium).

The slide holds normal lung tissue with a small tumour region (real LC25000 patches), glass and
pen ink; its features come from the real extraction path (tiny model, fast). The page is driven
in headless Chromium (Playwright, the Debian package); the screenshot goes to $BIOMEDCLIP_ARTIFACTS
(or a temporary folder) and a copy of it is committed as docs/img/serve-slides.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_main
from tests.slide.builders import build_slide, lc25000

TUMOUR_CELLS = [(2, 2), (3, 2), (2, 3)]


@pytest.fixture(scope="module")
def tiny_slide(tmp_path_factory, tiny_model_dir):
    """A 20x slide (0.5 um/px, 8 x 6 cells of 224 px): a 5 x 4 tissue block, three cells of it
    tumour; its features extracted with the tiny model to DIR/h5_files/slide1.h5."""
    import biomedclip
    from biomedclip.embedding import Encoder
    from biomedclip.slide.cohort import from_inputs
    from biomedclip.slide.features import extract_features

    tumour, normal = lc25000("lung_aca", 3), lc25000("lung_n", 17)
    cells = [(x, y) for y in range(1, 5) for x in range(1, 6)]
    tiles, n = [], 0
    for cell in cells:
        if cell in TUMOUR_CELLS:
            tiles.append((tumour[TUMOUR_CELLS.index(cell)], *cell))
        else:
            tiles.append((normal[n], *cell))
            n += 1
    root = tmp_path_factory.mktemp("tiny_slide")
    spec = build_slide(root / "slide1.tif", tiles, grid=(8, 6), patch_px=224, mpp=0.5, levels=2)
    model, _, _ = biomedclip.load(str(tiny_model_dir))
    feats = root / "features"
    stats = extract_features(
        Encoder(model), from_inputs([spec.path]), feats, model_source=str(tiny_model_dir),
        progress=False,
    )  # fmt: skip
    assert not stats.errors and stats.extracted == 1
    return spec, feats


def test_text_heatmap_png_with_legend(tiny_slide, tiny_model_dir, tmp_path, capsys):
    import json

    from biomedclip.slide.heatmap import LEGEND_H

    spec, feats = tiny_slide
    out = tmp_path / "heat.png"
    code, stdout, err = run_main(
        capsys, "slide", "heatmap", spec.path, "--features", feats, "--text", "tumor",
        "--out", out, "--max-side", 512, "--json", "--model", tiny_model_dir,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(stdout)
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    W, H = spec.levels[0]
    assert img.shape[1] == 512 and img.shape[0] == round(512 * H / W) + LEGEND_H
    # painted where the patches are, untouched glass elsewhere (compared with the thumbnail)
    from biomedclip.imaging.wsi import open_slide

    with open_slide(spec.path) as s:
        thumb = np.asarray(s.thumbnail(512).convert("RGB")).astype(int)
    diff = np.abs(img[: thumb.shape[0]] - thumb).sum(-1)
    scale = 512 / W
    for cell, kind in spec.kind.items():
        x0, y0, x1, y1 = (int(v * scale) for v in spec.box(cell))
        inner = diff[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
        if kind == "tissue":
            assert inner.mean() > 20, cell
        else:
            assert inner.mean() < 3, (cell, kind)
    legend = img[thumb.shape[0] :]
    assert legend.std() > 10  # the colour bar and its labels
    assert doc["min"] < doc["max"] and len(doc["top_patches"]) == 5
    tissue = {spec.box(c)[:2] for c in spec.cells("tissue")}
    assert all((p["x"], p["y"]) in tissue for p in doc["top_patches"])


def test_attention_heatmap_and_zero_shot_cli(tiny_slide, tiny_model_dir, tmp_path, capsys):
    import json

    from biomedclip.slide.features_file import h5_path, read_features
    from biomedclip.slide.mil import GatedAttentionMIL, MILConfig, save_mil

    spec, feats = tiny_slide
    sf = read_features(h5_path(feats, "slide1"))
    assert sf.attrs["slide_path"] and sf.features.shape[1] == 32
    import torch

    torch.manual_seed(0)
    model = save_mil(GatedAttentionMIL(32, 2), tmp_path / "m.safetensors", MILConfig(),
                     ["normal", "tumor"])  # fmt: skip
    out = tmp_path / "attn.png"
    code, stdout, err = run_main(
        capsys, "slide", "heatmap", h5_path(feats, "slide1"), "--mil", model, "--out", out, "--json"
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["slide"] == str(spec.path)  # found through the file's slide_path attribute
    assert Image.open(out).size[0] == 1024

    code, stdout, err = run_main(
        capsys, "slide", "zeroshot", feats, "--labels", "tumor, normal", "--poolings", "1,5,mean",
        "--json", "--model", tiny_model_dir,
    )  # fmt: skip
    assert code == 0, err
    (res,) = json.loads(stdout)["results"]
    assert res["slide_id"] == "slide1" and res["pooling"] == "top-1"
    assert set(res["scores"]) == {"top-1", "top-5", "mean"}
    assert len(res["top_patches"]["tumor"]) == 5
    # one unreadable feature file is reported (exit 1); the others are still classified
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    code, stdout, err = run_main(capsys, "slide", "zeroshot", feats, bad, "--labels", "a, b",
                                 "--json", "--model", tiny_model_dir)  # fmt: skip
    doc = json.loads(stdout)
    assert code == 1 and [r["slide_id"] for r in doc["results"]] == ["slide1"]
    assert doc["failures"][0]["file"] == str(bad) and "bad.h5" in doc["failures"][0]["error"]
    # a missing feature folder is named, exit code 2
    code, _, err = run_main(capsys, "slide", "zeroshot", tmp_path / "nope", "--labels", "a, b",
                            "--model", tiny_model_dir)  # fmt: skip
    assert code == 2 and "nope" in err


CHROMIUM = os.environ.get("BIOMEDCLIP_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_slides_page_in_chromium(tiny_slide, tiny_model_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} not found (.ci/run installs the chromium package)")
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    from tests.serve.conftest import start_server

    spec, feats = tiny_slide
    artifacts = Path(os.environ.get("BIOMEDCLIP_ARTIFACTS", tmp_path)) / "serve-browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    from biomedclip.slide.features_file import h5_path, read_h5, write_h5

    # the served folder: the slide, and a copy whose features claim another model
    slides_dir = tmp_path / "slides"
    shutil.copytree(feats, slides_dir)
    other = read_h5(h5_path(slides_dir, "slide1"))
    other.attrs["model_sha256"] = "0" * 64
    write_h5(h5_path(slides_dir, "zz-other-model"), other)
    server = start_server(model=str(tiny_model_dir), slides=str(slides_dir), max_wait_ms=1.0)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            # the main page links to the Slides page when the server has slides
            page.goto(server.url + "/")
            page.wait_for_function("!document.querySelector('#nav-slides').hidden")
            page.locator("#nav-slides").click()
            page.wait_for_url("**/slides")
            page.wait_for_function("document.querySelectorAll('#slide-list button').length > 0")
            assert page.locator("#slide-list button").first.get_attribute("data-id") == "slide1"
            # the first slide opens with the default prompt; then a typed one replaces it
            page.wait_for_function(
                "document.querySelector('#slide-caption').textContent.includes('tumor')"
            )
            page.locator("#prompt").fill("adenocarcinoma")
            page.locator("#top-k").fill("4")
            page.get_by_role("button", name="Show heatmap").click()
            page.wait_for_function(
                "document.querySelector('#slide-status').textContent.includes('Done')"
                " && document.querySelector('#slide-caption').textContent.includes('adenocarcinoma')"
            )
            page.wait_for_function(
                "document.querySelector('#slide-heatmap').naturalWidth > 0 && "
                "[...document.querySelectorAll('#top-patches img')].every("
                "i => i.complete && i.naturalWidth > 0)"
            )
            assert page.locator("#top-patches li").count() == 4
            assert page.locator("#slide-heatmap").is_visible()
            shot = artifacts / "slides.png"
            page.screenshot(path=str(shot), full_page=True)
            # an empty prompt is refused in the page, an unknown slide by the service
            page.locator("#prompt").fill("")
            page.get_by_role("button", name="Show heatmap").click()
            assert "prompt" in page.locator("#slide-status").inner_text()
            assert not errors, errors
            offsite = [u for u in requests if not u.startswith(server.url)
                       and not u.startswith("data:")]  # fmt: skip
            assert not offsite, offsite
            browser.close()
        import httpx

        listed = httpx.get(server.url + "/v1/slides").json()["slides"]
        assert listed == [{"id": "slide1", "patches": 20, "image": True},
                          {"id": "zz-other-model", "patches": 20, "image": True}]  # fmt: skip
        r = httpx.post(server.url + "/v1/slides/nope/heatmap", json={"text": "tumor"})
        assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
        r = httpx.post(server.url + "/v1/slides/zz-other-model/heatmap", json={"text": "tumor"})
        assert r.status_code == 400 and "extract them again" in r.json()["error"]["message"]
        print(f"screenshot: {shot}")
    finally:
        server.stop()
