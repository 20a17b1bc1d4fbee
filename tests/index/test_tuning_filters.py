"""Recall-targeted tuning, the automatic layout on a realistic set, filtered search, the generator."""

from __future__ import annotations

import numpy as np
import pytest

from biomedclip.errors import InputError
from biomedclip.index import (
    IndexSpec,
    VectorIndex,
    build_index,
    build_index_from_arrays,
    parse_filter,
)
from biomedclip.index.synthetic import VectorProfile, generate, queries

from .conftest import brute_force_top_k, unit, write_engine_dataset


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def realistic_50k(tmp_path_factory):
    """50k vectors of the CLIP-like clustered mixture, written as an embedding dataset."""
    profile = VectorProfile(dim=256, topics=300)
    base = generate(profile, 50_000, seed=3)
    d = tmp_path_factory.mktemp("realistic")
    rng = np.random.default_rng(0)
    write_engine_dataset(
        d / "emb",
        [f"f{i}" for i in range(len(base))],
        base,
        rows_per_part=20_000,
        extra={"year": rng.integers(2000, 2025, len(base)).tolist()},
    )
    return d, base, queries(profile, 200, seed=3)


def test_automatic_choice_meets_recall_target_on_50k_clustered_set(realistic_50k):
    d, base, q = realistic_50k
    index = build_index(d / "emb", d / "auto")
    m = VectorIndex.open(d / "auto").manifest
    assert m.kind == "ivfpq" and m.params["refine"] == "flat"  # fast-scan + exact re-ranking
    # the manifest records the tuned parameters and the recall measured on held-out queries
    assert m.tuning["recall"] >= 0.95 and m.tuning["target_met"] and m.tuning["queries"] == 500
    assert m.params["nprobe"] == m.tuning["chosen"]["nprobe"]
    assert m.params["refine_factor"] == m.tuning["chosen"]["refine_factor"]
    # ... and the choice holds on fresh queries against brute force
    _, truth = brute_force_top_k(base, q, 10)
    assert recall(VectorIndex.open(d / "auto").search_vectors(q, 10)[1], truth) >= 0.95
    # exact re-ranking: scores are true cosines
    scores, rows = index.search_vectors(q[:5], 10)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", unit(q[:5]), base[rows]), atol=1e-5)


def test_recall_target_moves_the_trade_off(realistic_50k):
    d, base, _ = realistic_50k
    sub = base[:20_000]
    ids = [f"v{i}" for i in range(len(sub))]
    spec = dict(kind="ivf", exact_max=1000, tune_queries=200)
    low = build_index_from_arrays(
        ids, sub, d / "lo", "m", spec=IndexSpec(**spec, recall_target=0.7)
    )
    high = build_index_from_arrays(
        ids, sub, d / "hi", "m", spec=IndexSpec(**spec, recall_target=0.99)
    )
    lo, hi = low.manifest, high.manifest
    assert lo.params["nprobe"] < hi.params["nprobe"]
    assert 0.7 <= lo.tuning["recall"] < hi.tuning["recall"] and hi.tuning["recall"] >= 0.99
    assert [p["nprobe"] for p in hi.tuning["grid"]] == sorted(
        p["nprobe"] for p in hi.tuning["grid"]
    )


def _filtered_truth(base, q, mask, k):
    rows = np.flatnonzero(mask)
    _, sub = brute_force_top_k(base[rows], q, min(k, len(rows)))
    return rows[sub]


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_filtered_search_fills_top_k_with_the_brute_force_answer(tmp_path, kind):
    rng = np.random.default_rng(5)
    n = 3000
    base = unit(rng.standard_normal((n, 24)))
    q = unit(rng.standard_normal((30, 24)))
    meta = {
        "split": rng.choice(["train", "val", "test"], n).tolist(),
        "year": rng.integers(2000, 2025, n).tolist(),
        "journal": [f"j{i}" for i in rng.integers(0, 100, n)],
    }
    spec = IndexSpec(kind=kind, nlist=32, nprobe=2, refine="flat", refine_factor=50)
    index = build_index_from_arrays(
        [f"v{i}" for i in range(n)], base, tmp_path / "i", "m", metadata=meta, spec=spec
    )
    split, year, journal = (np.array(meta[c]) for c in ("split", "year", "journal"))
    cases = {
        ("split=test",): split == "test",
        ("split=val,test", "year>=2020"): (split != "train") & (year >= 2020),
        ("journal=j3",): journal == "j3",  # ~30 rows: far fewer than nprobe=2 lists hold
        ("year<2001", "split!=train"): (year < 2001) & (split != "train"),
    }
    for where, mask in cases.items():
        k = 10
        scores, rows = index.search_vectors(q, k, list(where))
        want = _filtered_truth(base, q, mask, k)
        assert mask[rows[rows >= 0]].all()  # only matching rows
        assert ((rows >= 0).sum(1) == min(k, mask.sum())).all()  # top-k filled after filtering
        if kind == "flat" or mask.mean() < 0.05:  # exact (flat, or the exhaustive fallback)
            np.testing.assert_array_equal(np.sort(rows, 1), np.sort(want, 1))
        else:
            assert recall(rows, want) >= 0.3
    hits = index.search(q[:2], 5, {"split": ["val"], "year": 2010})
    assert all(h.metadata["split"] == "val" and h.metadata["year"] == 2010 for h in hits[0])
    few = index.search(q[:1], 50, "journal=j3")[0]  # fewer matches than k: all of them
    assert len(few) == int((journal == "j3").sum())


def test_filter_errors_name_the_problem(tmp_path):
    base = unit(np.random.default_rng(1).standard_normal((50, 8)))
    index = build_index_from_arrays(
        [f"v{i}" for i in range(50)], base, tmp_path / "i", "m", metadata={"year": list(range(50))}
    )
    with pytest.raises(InputError, match="unknown column 'journal'"):
        index.search(base[:1], 3, "journal=x")
    with pytest.raises(InputError, match="not of type int64"):
        index.search(base[:1], 3, "year>=recent")
    with pytest.raises(InputError, match="expected COLUMN=VALUE"):
        parse_filter("year")
    assert parse_filter("split=a,b").value == ["a", "b"] and parse_filter("y>=3").op == ">="


def test_index_is_memory_mapped_and_stays_addable(tmp_path):
    rng = np.random.default_rng(2)
    write_engine_dataset(
        tmp_path / "a", [f"a{i}" for i in range(100)], rng.standard_normal((100, 8))
    )
    write_engine_dataset(tmp_path / "b", [f"b{i}" for i in range(20)], rng.standard_normal((20, 8)))
    build_index(tmp_path / "a", tmp_path / "idx")
    mapped = VectorIndex.open(tmp_path / "idx")
    assert mapped._mapped and len(mapped.search(rng.standard_normal(8), 3)[0]) == 3
    assert mapped.add_embeddings(tmp_path / "b").total == 120
    assert len(VectorIndex.open(tmp_path / "idx", mmap=False)) == 120


def test_generator_has_the_profile_statistics_and_fit_recovers_them():
    profile = VectorProfile(dim=64, topics=40, near_duplicates=0.1)
    x = generate(profile, 8000, seed=1)
    assert x.shape == (8000, 64) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(x, generate(profile, 8000, seed=1))  # deterministic
    pairs = np.random.default_rng(0).integers(0, len(x), (4000, 2))
    cos = np.sum(x[pairs[:, 0]] * x[pairs[:, 1]], 1)
    assert abs(cos.mean() - profile.mean_cosine) < 0.05  # the cone
    fitted = VectorProfile.fit(x, topics=40)
    assert abs(fitted.mean_cosine - profile.mean_cosine) < 0.05
    assert abs(fitted.near_duplicates - profile.near_duplicates) < 0.04
    assert fitted.spectrum_decay > 0.3  # anisotropic
    fresh = queries(profile, 10, seed=1)
    assert not np.isclose(fresh @ x.T, 1.0, atol=1e-6).any()  # queries are not in the set
