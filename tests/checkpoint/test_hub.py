"""Hub loading: download through huggingface_hub from a local endpoint, cache, offline, sha256."""

from __future__ import annotations

import time

import pytest
import torch

import biomedclip
from biomedclip.config import DEFAULT_MODEL, HUB_ID, RELEASED_WEIGHTS_FILE
from biomedclip.errors import ChecksumError, ModelNotFoundError
from tests.checkpoint.fake_hub import FakeHub


def _files(d):
    return {p.name: p for p in d.iterdir()}


def test_download_cache_then_offline(tmp_path, tiny_model_dir, monkeypatch):
    cache = tmp_path / "hf-cache"
    with FakeHub("testorg/tiny-biomedclip", _files(tiny_model_dir)) as hub:
        model, _, tok = biomedclip.load(
            "hf-hub:testorg/tiny-biomedclip", cache_dir=cache, endpoint=hub.endpoint
        )
        assert any(path.endswith("open_clip_model.safetensors") for _, path in hub.requests)
    assert (cache / "models--testorg--tiny-biomedclip").is_dir()
    # the server is gone and the hub is declared offline: the cache alone serves the model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, _, tok2 = biomedclip.load("hf-hub:testorg/tiny-biomedclip", cache_dir=cache)
    ref, _, _ = biomedclip.load(tiny_model_dir)
    for k, v in ref.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    assert tok2(["red square"]).input_ids.tolist() == tok(["red square"]).input_ids.tolist()


def test_no_network_no_cache_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.monotonic()
    with pytest.raises(ModelNotFoundError) as err:
        biomedclip.load(DEFAULT_MODEL, cache_dir=tmp_path)
    assert time.monotonic() - t0 < 10
    assert "local directory" in str(err.value) and "cannot be reached" in str(err.value)


def test_offline_flag_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        biomedclip.load(DEFAULT_MODEL, cache_dir=tmp_path)


def test_released_name_is_verified_from_hub(tmp_path, tiny_model_dir):
    """A file served as the released checkpoint with other content fails the sha256 check."""
    files = _files(tiny_model_dir)
    fake_release = tmp_path / RELEASED_WEIGHTS_FILE
    sd = biomedclip.load_model(tiny_model_dir).state_dict()
    torch.save(sd, fake_release)
    files = {k: v for k, v in files.items() if not k.endswith(".safetensors")}
    files[RELEASED_WEIGHTS_FILE] = fake_release
    with FakeHub(HUB_ID, files) as hub, pytest.raises(ChecksumError, match="does not match"):
        biomedclip.load("hf-hub:" + HUB_ID, cache_dir=tmp_path / "c", endpoint=hub.endpoint)


def test_released_name_is_verified_in_a_clone(tmp_path, tiny_model_dir):
    clone = tmp_path / HUB_ID.split("/")[1]
    clone.mkdir()
    for name, path in _files(tiny_model_dir).items():
        if not name.endswith(".safetensors"):
            (clone / name).write_bytes(path.read_bytes())
    torch.save(biomedclip.load_model(tiny_model_dir).state_dict(), clone / RELEASED_WEIGHTS_FILE)
    with pytest.raises(ChecksumError, match="sha256"):
        biomedclip.load(clone)
    model, _, _ = biomedclip.load(clone, verify=False)  # an explicit opt-out still loads
    assert model.config.embed_dim == 32
