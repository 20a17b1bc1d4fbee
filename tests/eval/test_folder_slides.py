"""Issue 24: a folder dataset holding a whole slide or an unreadable file. A slide crashed the
near-duplicate grouping (Pillow's DecompressionBombError, with a traceback); unreadable files
hashed to zeros and were silently never grouped. Now a slide is grouped by its thumbnail and an
unreadable file is named, alone in its group."""

from __future__ import annotations

import logging

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from biomedclip.eval.datasets import groups
from biomedclip.eval.datasets.folders import image_folder
from biomedclip.imaging import load_image
from tests.imaging.helpers import write_pyramid


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class ``a``: a pyramidal slide (.svs, 1024 x 768 level 0) and a mirrored PNG of its
    thumbnail; class ``b``: unrelated images, two blank tiles and two unreadable files."""
    root = tmp_path_factory.mktemp("slides") / "ds"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rng = np.random.default_rng(0)
    base = np.full((768, 1024, 3), 240, np.uint8)
    base[128:640, 256:768] = (
        rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(64, 0).repeat(64, 1)
    )
    write_pyramid(root / "a" / "slide.svs", base, levels=3, tile=256)
    thumb = load_image(root / "a" / "slide.svs")
    thumb = thumb.resize((thumb.width // 4, thumb.height // 4)).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT
    )
    thumb.save(root / "a" / "thumb_mirrored.png")
    for i in range(4):
        arr = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        Image.fromarray(arr).save(root / "b" / f"img{i}.png")
    for i in range(2):
        Image.new("RGB", (64, 64), (200, 200, 200)).save(root / "b" / f"blank{i}.png")
        (root / "b" / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_slide_is_grouped_by_its_thumbnail_and_unreadable_files_are_named(folder, monkeypatch):
    # a real slide is ~100k x 80k pixels: past Pillow's decompression-bomb limit at level 0.
    # Lowering the limit makes this small pyramid such a slide for Image.open.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 200_000)
    monkeypatch.setattr(groups, "_cache", {})
    with pytest.raises(PIL.Image.DecompressionBombError):
        Image.open(folder / "a" / "slide.svs")
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [p.name for p in paths]
    found, unreadable = groups.near_duplicate_groups(paths)
    g = dict(zip(names, found))
    assert g["slide.svs"] == g["thumb_mirrored.png"]  # grouped by the thumbnail
    assert len({g[f"img{i}.png"] for i in range(4)} | {g["slide.svs"]}) == 5
    assert g["blank0.png"] == g["blank1.png"]  # identical tiles are one group
    assert sorted(unreadable) == [str(folder / "b" / f"broken{i}.jpg") for i in range(2)]
    assert all(unreadable.values())  # each with its reason
    assert g["broken0.jpg"] != g["broken1.jpg"]  # never one shared hash / group
    assert (
        len({g["broken0.jpg"], g["broken1.jpg"]} & set(g[n] for n in names if "broken" not in n))
        == 0
    )


def test_folder_dataset_with_a_slide_splits_and_notes_the_unreadable(folder, monkeypatch, caplog):
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 200_000)
    monkeypatch.setattr(groups, "_cache", {})
    # caplog's handler on the module's own logger: other tests in the same worker may configure
    # an ancestor logger not to propagate
    groups.log.addHandler(caplog.handler)
    monkeypatch.setattr(groups.log, "disabled", False)
    caplog.set_level(logging.WARNING, logger=groups.log.name)
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    ids = set()
    for split in ("train", "val", "test"):
        ds = image_folder(folder, split)
        ids |= set(ds.ids)
        note = next(n for n in ds.notes if "unreadable" in n)
        assert "2 unreadable file(s)" in note and "broken0.jpg" in note and "broken1.jpg" in note
    assert len(ids) == 10 and "a/slide.svs" in ids
    groups.log.removeHandler(caplog.handler)
    assert "broken0.jpg" in caplog.text
