"""The onnx-int8 image fast path: close to fp32, exported once and cached, refused on GPUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biomedclip.embedding import EmbedConfig, embed_images, embed_to_dataset, read_manifest, sources
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.errors import ConfigError, InputError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("BIOMEDCLIP_CACHE", str(d))
    return d / "onnx"


def test_int8_images_match_fp32_and_the_export_is_cached(tiny, image_dir, cache):
    model, pre, _ = tiny
    paths = sorted(p for p in image_dir.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg"))
    paths = [p for p in paths if p.name != "broken.jpg"]
    fp32 = embed_images(model, pre, paths, EmbedConfig(progress=False, num_workers=0))
    fast = embed_images(
        model, pre, paths, EmbedConfig(progress=False, num_workers=0, backend="onnx-int8")
    )
    assert fast.ids == fp32.ids and len(fast.ids) == 5
    cos = (fast.embeddings * fp32.embeddings).sum(1)
    assert cos.min() > 0.99, cos  # the tiny random model; the full model's figure is benchmarked
    assert not np.array_equal(fast.embeddings, fp32.embeddings)  # really another path
    files = list(cache.glob("image-*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    # another encoder of the same weights reuses the file; changed weights export anew
    Encoder(model, settings=EncoderSettings(backend="onnx-int8"))
    assert files[0].stat().st_mtime_ns == mtime
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.visual.head.proj.weight.mul_(1.5)
    Encoder(other, settings=EncoderSettings(backend="onnx-int8"))
    assert len(list(cache.glob("image-*.onnx"))) == 2


def test_backend_is_checked_and_recorded(tiny, image_dir, tmp_path, cache):
    model, pre, tok = tiny
    with pytest.raises(ConfigError, match="backend"):
        EmbedConfig(backend="tensorrt")
    out = tmp_path / "emb"
    cfg = EmbedConfig(batch_size=2, num_workers=0, progress=False, backend="onnx-int8")
    embed_to_dataset(model, pre, tok, sources.image_folder(image_dir), out, cfg, "tiny")
    assert read_manifest(out)["precision"] == "onnx-int8+fp32"
    # an exact fp32 run must not be appended to int8 embeddings
    with pytest.raises(InputError, match="precision"):
        embed_to_dataset(
            model,
            pre,
            tok,
            sources.image_folder(image_dir),
            out,
            EmbedConfig(progress=False),
            "tiny",
        )
