"""The feature cache: computed once per (model, dataset, split, preprocessing), reused, resumable;
a bad image is recorded and counted while the rest of its chunk is kept."""

from __future__ import annotations

import numpy as np
import pytest

from biomedclip.eval.datasets import image_folder
from biomedclip.eval.features import compute_features

from .fixtures import write_class_folders


class Counting:
    """An encoder wrapper that counts encoded images and can fail after ``fail_after`` calls."""

    def __init__(self, encoder, fail_after: int | None = None):
        self.inner, self.fail_after = encoder, fail_after
        self.calls = self.images = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_images(self, images, ids=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.images += len(images)
        return self.inner.encode_images(images, ids)


@pytest.fixture()
def folder(tmp_path):
    root = write_class_folders(tmp_path / "data", {"a": (200, 30, 30), "b": (30, 30, 200)}, 9)
    (root / "b" / "b_004.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return image_folder(root, "all")


def test_cached_once_and_reused(tiny_encoder, folder, tmp_path):
    enc = Counting(tiny_encoder)
    first = compute_features(enc, folder, tmp_path / "cache", chunk_size=5)
    assert enc.images == 18 and enc.calls == 4
    assert first.embeddings.shape == (17, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(first.embeddings, axis=1), 1, atol=1e-5)
    assert [f["id"] for f in first.failures] == ["b/b_004.png"]
    assert "b_004.png" not in first.ids and len(first.labels) == 17
    again = compute_features(enc, folder, tmp_path / "cache", chunk_size=5)
    assert enc.images == 18  # nothing re-encoded
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    np.testing.assert_array_equal(again.positions, first.positions)
    assert again.failures == first.failures
    plain = compute_features(tiny_encoder, folder, None)
    np.testing.assert_allclose(plain.embeddings, first.embeddings, atol=1e-6)


def test_killed_run_resumes(tiny_encoder, folder, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        compute_features(Counting(tiny_encoder, fail_after=2), folder, tmp_path / "c", chunk_size=5)
    enc = Counting(tiny_encoder)
    done = compute_features(enc, folder, tmp_path / "c", chunk_size=5)
    assert enc.calls == 2 and enc.images == 8  # only the chunks after the kill
    ref = compute_features(tiny_encoder, folder, None)
    np.testing.assert_allclose(done.embeddings, ref.embeddings, atol=1e-6)
    np.testing.assert_array_equal(done.positions, ref.positions)


def test_key_depends_on_split_data_and_preprocessing(tiny_encoder, folder, tmp_path):
    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.imaging import ReadOptions

    a = compute_features(tiny_encoder, folder, tmp_path / "c")
    sub = compute_features(tiny_encoder, folder.subset(range(6), "train"), tmp_path / "c")
    other = Encoder(tiny_encoder.model, tiny_encoder.preprocess, tiny_encoder.tokenizer,
                    EncoderSettings(read=ReadOptions(mode="RGB", background=(255, 255, 255))))  # fmt: skip
    b = compute_features(other, folder, tmp_path / "c")
    assert len({a.cache_dir, sub.cache_dir, b.cache_dir}) == 3
