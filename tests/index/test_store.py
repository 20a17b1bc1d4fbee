"""Index build / add / search against brute-force numpy, layouts, manifest and crash safety."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biomedclip.embedding.store import read_embeddings
from biomedclip.errors import ConfigError, InputError
from biomedclip.index import (
    IndexSpec,
    ModelMismatchError,
    VectorIndex,
    build_index,
    build_index_from_arrays,
)
from biomedclip.index import store as store_mod

from .conftest import brute_force_top_k, clustered, unit, write_engine_dataset


def ids_for(n, prefix="v"):
    return [f"{prefix}{i}" for i in range(n)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_flat_build_matches_brute_force(tmp_path, dtype):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((700, 48)).astype(np.float32)
    queries = rng.standard_normal((25, 48)).astype(np.float32)
    ids = ids_for(len(base))
    emb = write_engine_dataset(
        tmp_path / "emb",
        ids,
        base,
        dtype=dtype,
        rows_per_part=256,
        extra={"label": [i % 7 for i in range(len(base))]},
    )
    index = build_index(emb, tmp_path / "idx")
    assert index.kind == "flat" and len(index) == 700
    stored = unit(base).astype(np.float16).astype(np.float32) if dtype == "float16" else unit(base)
    want_scores, want_rows = brute_force_top_k(stored, queries, 10)
    hits = VectorIndex.open(tmp_path / "idx").search(queries, k=10)
    tol = 1e-3 if dtype == "float16" else 1e-5
    for q, qhits in enumerate(hits):
        assert [h.rank for h in qhits] == list(range(1, 11))
        np.testing.assert_allclose([h.score for h in qhits], want_scores[q], atol=tol)
        # ids agree wherever scores are not (near-)tied
        for h, row, s in zip(qhits, want_rows[q], want_scores[q]):
            if np.sum(np.abs(want_scores[q] - s) < 2 * tol) == 1:
                assert h.id == ids[row]
        assert all(h.metadata["label"] == int(h.id[1:]) % 7 for h in qhits)
        assert all(h.metadata["path"] == f"img/{h.id}.png" for h in qhits)


def test_auto_layout_choice_and_override():
    spec = IndexSpec()
    assert spec.resolve(20_000, 512).kind == "flat"
    mid = spec.resolve(20_001, 512)
    assert mid.kind == "ivfpq" and mid.params["nlist"] == 128 and mid.params["nprobe"] == 0
    assert (mid.params["pq_m"], mid.params["pq_bits"], mid.params["refine"]) == (128, 4, "flat")
    assert spec.resolve(1_000_000, 512).params["nlist"] == 1024
    assert spec.resolve(2_000_000, 512).params["refine"] == "flat"  # 4 GB: half of 8 GiB
    big = spec.resolve(10_000_000, 512)
    assert big.kind == "ivfpq" and big.params["refine"] == "sq8"
    assert big.memory_bytes <= 8 * 2**30  # the 10M choice fits in 8 GiB
    assert IndexSpec(memory_gib=1).resolve(10_000_000, 512).params["refine"] == "none"
    assert IndexSpec(kind="ivf").resolve(1_000_000, 512).params["nlist"] == 2048
    assert IndexSpec(kind="flat").resolve(10**8, 512).kind == "flat"
    assert IndexSpec(kind="ivfpq", nlist=8).resolve(1000, 32).params["nlist"] == 8
    with pytest.raises(ConfigError, match="kind"):
        IndexSpec(kind="lsh")
    with pytest.raises(ConfigError, match="recall target"):
        IndexSpec(recall_target=1.5)
    with pytest.raises(ConfigError, match="at least"):
        IndexSpec(kind="ivfpq", pq_bits=8).resolve(100, 32)


def recall(index, base, queries, k=10):
    _, want = brute_force_top_k(base, queries, k)
    _, got = index.search_vectors(queries, k)
    return np.mean([len(set(g) & set(w)) / k for g, w in zip(got, want)])


def test_hnsw_recall_and_params_survive_reopen(tmp_path):
    data = clustered(3050, 32, seed=2)
    base, queries = data[:3000], data[3000:]
    index = build_index_from_arrays(
        ids_for(3000),
        base,
        tmp_path / "idx",
        model="m",
        spec=IndexSpec(kind="hnsw", hnsw_m=16, tune_queries=100),
    )
    assert index.kind == "hnsw" and index.manifest.params["m"] == 16
    tuned = index.manifest.params["ef_search"]
    assert tuned >= 10 and index.manifest.tuning["recall"] >= 0.95
    assert recall(index, base, queries) >= 0.9
    reopened = VectorIndex.open(tmp_path / "idx")
    assert reopened.manifest.params["ef_search"] == tuned
    reopened.set_search_params(ef_search=200)
    assert reopened.manifest.params["ef_search"] == 200
    assert recall(reopened, base, queries) >= 0.95


@pytest.mark.parametrize("refine,bits", [("none", 8), ("flat", 4), ("sq8", 4)])
def test_ivfpq_builds_trains_and_applies_search_params(tmp_path, refine, bits):
    data = clustered(3040, 32, seed=4)
    base, queries = data[:3000], data[3000:]
    spec = IndexSpec(
        kind="ivfpq", nlist=16, pq_m=16, pq_bits=bits, nprobe=16, refine=refine
    )  # refine_factor tuned
    index = build_index_from_arrays(ids_for(3000), base, tmp_path / "idx", model="m", spec=spec)
    reopened = VectorIndex.open(tmp_path / "idx")
    assert reopened.manifest.params["nprobe"] == 16  # given, not tuned
    assert reopened.manifest.tuning["recall"] == pytest.approx(index.manifest.tuning["recall"])
    r = recall(reopened, base, queries)
    assert r >= {"none": 0.3, "sq8": 0.85, "flat": 0.9}[refine]  # re-ranking recovers PQ losses
    if refine == "flat":
        assert reopened.manifest.tuning["target_met"]
        assert reopened.manifest.params["refine_factor"] >= 2
    if refine == "flat":  # exact re-scoring: scores are true cosines
        scores, rows = reopened.search_vectors(queries, 5)
        np.testing.assert_allclose(
            scores, np.einsum("qd,qkd->qk", unit(queries), unit(base)[rows]), atol=1e-5
        )
    reopened.set_search_params(nprobe=1, refine_factor=1)  # cheaper search: recall drops
    low = recall(reopened, base, queries)
    assert low < r if refine != "none" else low <= r  # (PQ alone is limited by its codes)


def test_add_is_incremental_idempotent_and_keeps_one_index_file(tmp_path):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((200, 16))
    write_engine_dataset(tmp_path / "a", ids_for(300, "a"), a)
    # b repeats 50 of a's ids (skipped) and brings 150 new ones
    b_ids = ids_for(50, "a") + ids_for(150, "b")
    write_engine_dataset(tmp_path / "b", b_ids, b)
    build_index(tmp_path / "a", tmp_path / "idx")
    index = VectorIndex.open(tmp_path / "idx")
    report = index.add_embeddings(tmp_path / "b")
    assert (report.added, report.skipped_duplicates, report.total) == (150, 50, 450)
    again = VectorIndex.open(tmp_path / "idx").add_embeddings(tmp_path / "b")
    assert (again.added, again.skipped_duplicates, again.total) == (0, 200, 450)
    reopened = VectorIndex.open(tmp_path / "idx")
    assert len(reopened) == 450 and reopened.manifest.count == 450
    assert reopened.ids() == ids_for(300, "a") + ids_for(150, "b")
    assert len(list((tmp_path / "idx").glob("index-*.faiss"))) == 1
    assert len(list((tmp_path / "idx").glob("meta-*.arrow"))) == 2
    assert len(reopened.manifest.metadata_files) == 2
    hit = reopened.search(unit(b[60:61]), k=1)[0][0]  # a vector added incrementally is found
    assert hit.id == "b10" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_same_id_other_modality_is_kept_and_duplicates_in_build_dropped(tmp_path):
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((4, 8))
    write_engine_dataset(
        tmp_path / "e",
        ["p1", "p1", "p2", "p2"],
        vecs,
        modality=["image", "text", "image", "image"],
        texts=[None, "a caption", None, None],
    )
    index = build_index(tmp_path / "e", tmp_path / "idx")
    assert index.keys() == [("p1", "image"), ("p1", "text"), ("p2", "image")]


def test_add_from_another_model_or_dim_is_refused(tmp_path):
    rng = np.random.default_rng(8)
    write_engine_dataset(tmp_path / "a", ids_for(20), rng.standard_normal((20, 8)), model="model-A")
    write_engine_dataset(
        tmp_path / "b", ids_for(20, "b"), rng.standard_normal((20, 8)), model="model-B"
    )
    write_engine_dataset(
        tmp_path / "c", ids_for(20, "c"), rng.standard_normal((20, 4)), model="model-A"
    )
    build_index(tmp_path / "a", tmp_path / "idx")
    index = VectorIndex.open(tmp_path / "idx")
    with pytest.raises(ModelMismatchError, match="model-A.*model-B"):
        index.add_embeddings(tmp_path / "b")
    with pytest.raises(InputError, match="dim 4"):
        index.add_embeddings(tmp_path / "c")
    assert len(VectorIndex.open(tmp_path / "idx")) == 20


def test_interrupted_add_leaves_previous_index_intact(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    write_engine_dataset(tmp_path / "a", ids_for(30, "a"), rng.standard_normal((30, 8)))
    write_engine_dataset(tmp_path / "b", ids_for(30, "b"), rng.standard_normal((30, 8)))
    build_index(tmp_path / "a", tmp_path / "idx")
    before = json.loads((tmp_path / "idx" / "manifest.json").read_text())

    def crash(index, path):
        path.with_name(f".{path.name}.tmp").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod, "_write_index_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        VectorIndex.open(tmp_path / "idx").add_embeddings(tmp_path / "b")
    monkeypatch.undo()
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text()) == before
    index = VectorIndex.open(tmp_path / "idx")
    assert len(index) == 30 and len(index.metadata()) == 30
    assert index.add_embeddings(tmp_path / "b").total == 60  # and the add can simply be re-run
    m = VectorIndex.open(tmp_path / "idx").manifest
    live = sorted([m.index_file, "manifest.json", *m.metadata_files])
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == live  # no leftovers
    assert len(m.metadata_files) == 2
    assert len(VectorIndex.open(tmp_path / "idx").metadata()) == 60


def test_build_refuses_existing_index_unless_overwrite(tmp_path):
    write_engine_dataset(tmp_path / "a", ids_for(10), np.eye(10, 6) + 0.1)
    build_index(tmp_path / "a", tmp_path / "idx")
    with pytest.raises(InputError, match="already exists"):
        build_index(tmp_path / "a", tmp_path / "idx")
    assert len(build_index(tmp_path / "a", tmp_path / "idx", overwrite=True)) == 10


def test_search_edge_cases(tmp_path):
    rng = np.random.default_rng(10)
    base = rng.standard_normal((5, 8)).astype(np.float32)
    index = build_index_from_arrays(ids_for(5), base, tmp_path / "idx", model="m")
    hits = index.search(base[0], k=50)[0]  # k above the size: every row once
    assert len(hits) == 5 and hits[0].id == "v0"
    with pytest.raises(InputError, match="dimension"):
        index.search(np.zeros((1, 7), np.float32))
    with pytest.raises(InputError, match="top-k"):
        index.search(base, k=0)


def test_bad_directories_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not an index directory"):
        VectorIndex.open(tmp_path)
    (tmp_path / "emb").mkdir()
    with pytest.raises(InputError, match="manifest"):
        build_index(tmp_path / "emb", tmp_path / "idx")
    write_engine_dataset(tmp_path / "e2", ids_for(3), np.eye(3, 4))
    m = json.loads((tmp_path / "e2" / "manifest.json").read_text())
    (tmp_path / "e2" / "manifest.json").write_text(json.dumps({**m, "dim": 5}))
    with pytest.raises(InputError, match="dim 5"):
        build_index(tmp_path / "e2", tmp_path / "idx2")


def test_index_reads_float16_datasets_through_the_store(tmp_path):
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((40, 12))
    write_engine_dataset(
        tmp_path / "e", ids_for(40), vecs, dtype="float16", rows_per_part=15, sha256="ab" * 32
    )
    ids, stored, _ = read_embeddings(tmp_path / "e")
    assert stored.dtype == np.float32 and stored.shape == (40, 12) and ids == ids_for(40)
    np.testing.assert_allclose(stored, unit(vecs), atol=1e-3)
    index = build_index(tmp_path / "e", tmp_path / "idx")
    assert index.manifest.model_sha256 == "ab" * 32 and len(index) == 40
    assert index.search(stored[7], k=1)[0][0].id == "v7"


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec(kind="flat"),
        IndexSpec(kind="hnsw", hnsw_m=8, ef_search=16),
        IndexSpec(kind="ivfpq", nlist=8, pq_m=8, pq_bits=4, nprobe=8, refine="flat"),
        IndexSpec(kind="ivfpq", nlist=8, pq_m=8, pq_bits=4, nprobe=8, refine="sq8"),
    ],
    ids=lambda s: f"{s.kind}-{s.refine}",
)
def test_opening_reads_ahead_all_but_the_mapped_store_at_the_end(tmp_path, spec, monkeypatch):
    """The read-ahead covers what FAISS copies; the mapped flat store is the file's tail."""
    data = clustered(1200, 32, seed=7)
    build_index_from_arrays(ids_for(1200), data, tmp_path / "idx", model="m", spec=spec)
    read = []
    real = store_mod.layouts.read_ahead
    monkeypatch.setattr(store_mod.layouts, "read_ahead", lambda p, n: read.append(n) or real(p, n))
    index = VectorIndex.open(tmp_path / "idx")
    path = tmp_path / "idx" / index.manifest.index_file
    size, blob = path.stat().st_size, path.read_bytes()
    tail = size - read[0]
    assert 0 < tail < size if spec.kind != "flat" else tail == 1200 * 32 * 4
    stored = index.faiss_index.reconstruct(1199)  # the last stored row ends the store
    if spec.refine != "sq8":
        end = blob.rfind(stored.astype(np.float32).tobytes()) + stored.nbytes
        assert size - 16 <= end <= size  # (an IndexRefine writes its k-factor after the store)
    assert index.search_vectors(data[:5], 3)[1][:, 0].tolist() == [0, 1, 2, 3, 4]
