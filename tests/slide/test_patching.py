"""Patching on real pyramidal slides: tissue of real LC25000 patches, pen ink, a hole, glass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import biomedclip.imaging.wsi as wsi
from biomedclip.errors import ImageError
from biomedclip.imaging.wsi import open_slide
from biomedclip.slide.patching import PatchSettings, SlideResolutionError, plan_patches
from biomedclip.slide.tissue import TissueSettings, segment_tissue
from tests.conftest import run_main
from tests.slide.builders import build_slide, lc25000

HOLE = (3, 3)  # a glass cell inside the tissue block


@pytest.fixture(scope="module")
def slide40(tmp_path_factory):
    """A 40x slide (0.25 um/px): a 5x5 block of tumour and normal tissue with a hole, pen ink
    beside it (one stroke touching the tissue) and glass around; 3 levels."""
    tumour, normal = lc25000("lung_aca", 12), lc25000("lung_n", 12)
    cells = [(x, y) for y in range(1, 6) for x in range(1, 6) if (x, y) != HOLE]
    images = tumour + normal
    tiles = [(images[i], x, y) for i, (x, y) in enumerate(cells)]
    pen = [("blue", 7, 1), ("green", 7, 2), ("black", 7, 3), ("blue", 6, 4)]
    path = tmp_path_factory.mktemp("slide40") / "s40.tif"
    return build_slide(path, tiles, grid=(8, 7), patch_px=448, mpp=0.25, levels=3, pen=pen)


@pytest.fixture(params=["openslide", "tifffile"])
def backend(request, monkeypatch):
    if request.param == "openslide":
        if wsi.openslide_module() is None:
            pytest.skip("openslide not installed")
    else:
        monkeypatch.setattr(wsi, "openslide_module", lambda: None)
    return request.param


def test_grid_at_20x_lies_on_tissue_only(slide40, backend):
    with open_slide(slide40.path) as s:
        assert s.backend.name == backend and s.mpp == pytest.approx(0.25)
        plan = plan_patches(s, PatchSettings())
    # 224 px at 20x = 448 level-0 px, read from level 1 (downsample 2) at 224 px
    assert (plan.patch_size, plan.patch_size_level0, plan.level, plan.read_size) == (
        224,
        448,
        1,
        224,
    )
    assert plan.target_magnification == 20 and plan.slide_mpp == 0.25
    assert plan.coords.dtype == np.int64
    W, H = slide40.levels[0]
    kept = set()
    for x, y in plan.coords.tolist():
        assert 0 <= x <= W - 448 and 0 <= y <= H - 448
        assert slide40.kinds_under(x, y, 448) == {"tissue"}, (x, y)  # no glass, pen, hole
        kept.add((x // 448, y // 448))
    tissue = set(slide40.cells("tissue"))
    assert HOLE not in kept and len(kept) >= 0.9 * len(tissue)


def test_pen_ink_would_be_tissue_without_the_filter(slide40):
    with open_slide(slide40.path) as s:
        plan = plan_patches(s, PatchSettings(tissue=TissueSettings(pen=False)))
    on = {tuple(c // 448) for c in plan.coords}
    assert {(7, 1), (7, 2), (6, 4)} <= on  # saturated blue / green ink passes the Otsu mask


def test_magnification_target_mpp_and_resolution(slide40, tmp_path):
    with open_slide(slide40.path) as s:
        p10 = plan_patches(s, PatchSettings(magnification=10))
        assert (p10.patch_size_level0, p10.level, p10.read_size) == (896, 2, 224)
        same = plan_patches(s, PatchSettings(target_mpp=1.0))
        np.testing.assert_array_equal(same.coords, p10.coords)
        with pytest.raises(ImageError, match="finer than the scan"):
            plan_patches(s, PatchSettings(magnification=80))
    bare = build_slide(
        tmp_path / "bare.tif",
        [(im, 1, 1 + i) for i, im in enumerate(lc25000("lung_aca", 2))],
        grid=(3, 4),
        mpp=None,
        levels=2,
        pen=False,
    )
    with open_slide(bare.path) as s:
        assert s.mpp is None and s.objective_power is None
        with pytest.raises(SlideResolutionError, match="bare.tif.*--mpp"):
            plan_patches(s)
        plan = plan_patches(s, PatchSettings(slide_mpp=0.5))
    assert plan.mpp_source == "user" and plan.level == 0 and plan.read_size == 224
    assert {tuple(c // 224) for c in plan.coords} == {(1, 1), (1, 2)}


def test_segmentation_fills_small_holes_keeps_gaps_drops_pen():
    rgb = np.full((64, 64, 3), 245, np.uint8)
    tissue = np.asarray(lc25000("lung_n", 1)[0].resize((40, 40), Image.Resampling.BOX))
    rgb[8:48, 8:48] = tissue
    rgb[20:22, 20:22] = 245  # a speck of glass inside tissue: filled
    rgb[30:40, 30:40] = 245  # a gap larger than a patch (8 px): kept
    rgb[50:60, 2:30] = (38, 64, 178)  # blue ink
    mask, pen = segment_tissue(rgb, patch_px=8)
    assert mask[20:22, 20:22].all() and not mask[31:39, 31:39].any()
    assert pen[52:58, 4:28].all() and not mask[50:60, 2:30].any()
    assert mask[10:18, 10:18].mean() > 0.9


def test_cli_patch_preview_and_json(slide40, tmp_path, capsys):
    png, csv = tmp_path / "grid.png", tmp_path / "coords.csv"
    code, out, err = run_main(
        capsys, "slide", "patch", slide40.path, "--preview", png, "--coords", csv, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["patches"] == len(doc["coords"]) > 0 and doc["patch_size_level0"] == 448
    assert csv.read_text().splitlines()[0] == "x,y"
    assert len(csv.read_text().splitlines()) == doc["patches"] + 1
    im = Image.open(png)
    assert im.format == "PNG" and max(im.size) == 1024
    px = np.asarray(im.convert("RGB")).astype(int)
    blue_outline = (px[..., 2] > 200) & (px[..., 0] < 60) & (px[..., 1] < 140)
    assert blue_outline.sum() > 100  # the grid is drawn
