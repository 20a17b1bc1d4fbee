"""Preprocessing equals open_clip's transform (max |Δ| <= 1e-6) on real and synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from biomedclip.config import PreprocessConfig
from biomedclip.transforms import eval_transform, train_transform
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def reference_transform(hub_dir):
    """open_clip's eval transform built from the released config's preprocess_cfg."""
    import json

    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    released = json.loads((hub_dir / "open_clip_config.json").read_text())["preprocess_cfg"]
    cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), released))
    return image_transform_v2(cfg, is_train=False)


def _synthetic() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (301, 457, 3), dtype=np.uint8), "RGB")
    return {
        "L": Image.fromarray(rng.integers(0, 256, (480, 353), dtype=np.uint8), "L"),
        "RGBA": Image.fromarray(rng.integers(0, 256, (250, 600, 4), dtype=np.uint8), "RGBA"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "CMYK": Image.fromarray(rng.integers(0, 256, (333, 222, 4), dtype=np.uint8), "CMYK"),
        "RGB-small": rgb.resize((100, 60)),  # upsampled
        "RGB-exact": rgb.resize((224, 224)),
    }


def _real() -> list[Image.Image]:
    paths = sorted(shared_path("biomedclip_hub", "example_data").rglob("*.*"))
    paths += sorted(shared_path("lc25000_lung").rglob("*.jpeg"))[:5]
    paths += sorted(shared_path("vqa_rad", "images").glob("*.jpg"))[:5]
    paths += sorted(shared_path("pmc", "medicat", "figures").glob("*.png"))[:3]
    return [Image.open(p) for p in paths]


def test_eval_equals_reference_on_real_images(reference_transform):
    ours = eval_transform(PreprocessConfig())
    images = _real()
    assert len(images) >= 20
    modes = {im.mode for im in images}
    assert {"RGB", "L", "P"} <= modes  # real files exercise several modes
    for im in images:
        a, b = ours(im), reference_transform(im)
        assert a.shape == (3, 224, 224)
        assert (a - b).abs().max() <= 1e-6


@pytest.mark.parametrize("mode", list(_synthetic()))
def test_eval_equals_reference_on_modes(reference_transform, mode):
    im = _synthetic()[mode]
    a, b = eval_transform()(im), reference_transform(im)
    assert (a - b).abs().max() <= 1e-6


def test_train_transform_crop_scale_and_determinism():
    cfg = PreprocessConfig()
    t = train_transform(cfg)
    crop = t.transforms[0]
    assert crop.scale == (0.9, 1.0) and crop.size == (224, 224)
    assert crop.interpolation.value == "bicubic"
    im = _synthetic()["RGBA"]
    torch.manual_seed(1)
    a = t(im)
    torch.manual_seed(1)
    b = t(im)
    assert a.shape == (3, 224, 224) and torch.equal(a, b)
