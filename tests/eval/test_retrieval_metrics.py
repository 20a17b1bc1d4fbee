"""Retrieval metrics on synthetic embeddings with known ranks, against brute-force numpy and open_clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biomedclip.eval.retrieval import metrics_from_ranks, retrieval_metrics, retrieval_ranks


def numpy_ranks(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of key i for query i by sorting the full similarity matrix (no ties assumed)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    k = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    order = np.argsort(-(q @ k.T), axis=1, kind="stable")
    return np.argmax(order == np.arange(len(q))[:, None], axis=1)


def numpy_metrics(ranks: np.ndarray, name: str) -> dict[str, float]:
    return {
        f"{name}_R@1": np.mean(ranks < 1),
        f"{name}_R@5": np.mean(ranks < 5),
        f"{name}_R@10": np.mean(ranks < 10),
        f"{name}_mean_rank": ranks.mean() + 1,
        f"{name}_median_rank": np.floor(np.median(ranks)) + 1,
    }


def planted(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Images e_i and texts whose similarity column j puts image j at a chosen rank r_j.

    For text query j the keys are the one-hot images, so sim(t_j, e_i) = S[i, j] / |t_j| and the
    text->image rank of pair j is exactly r_j (distinct values: no ties)."""
    rng = np.random.default_rng(seed)
    r = rng.integers(0, n, n)
    r[: n // 4] = 0  # a quarter retrieved first
    s = np.zeros((n, n))
    for j in range(n):
        # descending and distinct; the jitter (< half a step) also breaks ties across columns
        values = np.linspace(1.0, 0.1, n) + rng.uniform(0, 0.4 * 0.9 / n, n)
        others = [i for i in rng.permutation(n) if i != j]
        order = others[: r[j]] + [j] + others[r[j] :]
        s[order, j] = values
    return torch.eye(n), torch.tensor(s.T, dtype=torch.float32), r


def test_planted_ranks_are_recovered_exactly():
    images, texts, r = planted(60)
    got = retrieval_ranks(images, texts)
    assert got["text_to_image"][:, 0].tolist() == r.tolist()
    assert not got["text_to_image"][:, 1].any()  # distinct similarities: no ties
    m = retrieval_metrics(images, texts)
    want = numpy_metrics(r, "text_to_image")
    for key, value in want.items():
        assert m[key] == pytest.approx(value), key
    # image->text against brute-force numpy on the same features
    want_i2t = numpy_metrics(numpy_ranks(images.numpy(), texts.numpy()), "image_to_text")
    for key, value in want_i2t.items():
        assert m[key] == pytest.approx(value), key
    assert m["n_pairs"] == 60


def test_random_features_match_numpy_and_open_clip():
    open_clip_train = pytest.importorskip("open_clip_train.train")
    g = torch.Generator().manual_seed(3)
    img = torch.randn(301, 24, generator=g)
    txt = img + 1.5 * torch.randn(301, 24, generator=g)  # noisy pairs: ranks spread out
    ours = retrieval_metrics(img, txt, block=37)  # odd block size: exercises block edges
    i2t = numpy_ranks(img.numpy(), txt.numpy())
    t2i = numpy_ranks(txt.numpy(), img.numpy())
    want = {**numpy_metrics(i2t, "image_to_text"), **numpy_metrics(t2i, "text_to_image")}
    for key, value in want.items():
        assert ours[key] == pytest.approx(value), key
    nimg = torch.nn.functional.normalize(img, dim=-1)
    ntxt = torch.nn.functional.normalize(txt, dim=-1)
    ref = open_clip_train.get_clip_metrics(nimg, ntxt, 100.0)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(float(value)), key


def test_median_is_open_clips_floor_of_midpoint():
    ranks = {"x": torch.tensor([0, 0, 3, 3])}  # numpy median 1.5 -> floor 1 -> +1 = 2
    assert metrics_from_ranks(ranks)["x_median_rank"] == 2.0
    assert metrics_from_ranks({"x": torch.tensor([0, 4, 9])})["x_median_rank"] == 5.0


def test_ties_count_at_their_expected_rank_and_perfect_pairs():
    """Issue 24: a constant model (every similarity tied) scored R@1 = 100 % when ties favoured
    the match; at the expected rank among tied keys it scores chance."""
    same = torch.ones(5, 4)
    m = retrieval_metrics(same, same)
    assert m["image_to_text_R@1"] == pytest.approx(1 / 5)
    assert m["text_to_image_R@5"] == 1.0 and m["text_to_image_mean_rank"] == 3.0
    x = torch.randn(50, 16)
    assert retrieval_metrics(x, x * 3.0)["image_to_text_R@1"] == 1.0  # scale-invariant (cosine)


def test_misaligned_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="align"):
        retrieval_metrics(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="no pairs"):
        retrieval_metrics(torch.randn(0, 4), torch.randn(0, 4))
