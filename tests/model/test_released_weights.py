"""Opt-in: with BIOMEDCLIP_WEIGHTS pointing at the released weights, reproduce the model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

import biomedclip

WEIGHTS = os.environ.get("BIOMEDCLIP_WEIGHTS")


@pytest.mark.skipif(not WEIGHTS, reason="set BIOMEDCLIP_WEIGHTS to the released weights file/dir")
def test_reproduces_expected_zero_shot(hub_dir):
    expected = json.loads((hub_dir / "expected_zero_shot.json").read_text())
    model, preprocess, tokenizer = biomedclip.load(WEIGHTS, tokenizer=hub_dir)
    labels = expected["labels"]
    images = [hub_dir / expected["image_dir"] / name for name in expected["probabilities"]]
    template = expected["template"] + "{}"  # "this is a photo of {}"
    res = biomedclip.zero_shot(
        model,
        [Image.open(p) for p in images],
        labels,
        templates=template,
        tokenizer=tokenizer,
        preprocess=preprocess,
    )
    for row, path in zip(res.to_dicts(), images):
        for label, p in expected["probabilities"][Path(path).name].items():
            assert row[label] == pytest.approx(p, abs=1e-3), (path.name, label)
