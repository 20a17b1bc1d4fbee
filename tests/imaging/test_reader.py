"""The dispatcher: options validation, format detection, one representative image per input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import biomedclip
from biomedclip.errors import ImageError, InputError
from biomedclip.imaging import ReadOptions, detect_format, load_image, read_image
from tests.imaging.helpers import dicom_file, skimage_file


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frames": "last"},
        {"frames": -1},
        {"plane": "oblique"},
        {"slices": 0},
        {"tile_size": 4},
        {"level": 1, "magnification": 10},
        {"magnification": 0},
        {"tissue_fraction": 1.5},
        {"max_tiles": 0},
        {"wsi": "all"},
        {"percentiles": (50, 10)},
        {"format": "png"},
        {"window": "lungs"},
    ],
)
def test_bad_options_are_input_errors(kwargs):
    with pytest.raises(InputError):
        ReadOptions(**kwargs)


def test_options_accept_strings_from_the_cli():
    assert ReadOptions(frames="3").frames == 3
    assert ReadOptions(window="bone").window.center == 400.0


def test_detect_and_representative_image(tmp_path, slide_levels):
    vol = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 10), np.float32), np.eye(4)), str(vol))
    cases = {
        dicom_file("examples_ybr_color.dcm"): ("dicom", (320, 240)),
        vol: ("nifti", (8, 9)),
        skimage_file("retina.jpg"): ("pillow", (1411, 1411)),
        skimage_file("multipage.tif"): ("pillow", (10, 15)),
        slide_levels[0]: ("wsi", (1024, 768)),
    }
    for path, (kind, size) in cases.items():
        assert detect_format(path) == kind, path
        im = load_image(path)
        assert im.mode == "RGB" and im.size == size, path
    assert biomedclip.load_image is load_image


def test_forced_format_and_errors_keep_the_name(tmp_path):
    rec = read_image(dicom_file("CT_small.dcm"), format="dicom")
    assert rec.metadata["format"] == "dicom"
    with pytest.raises(ImageError, match="retina.jpg"):
        read_image(skimage_file("retina.jpg"), format="dicom")
    with pytest.raises(ImageError, match="retina.jpg"):
        read_image(skimage_file("retina.jpg"), format="nifti")
