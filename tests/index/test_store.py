"""Index build / add / search against brute-force numpy, layouts, manifest and crash safety."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biomedclip.errors import ConfigError, InputError
from biomedclip.index import (
    IndexSpec,
    ModelMismatchError,
    VectorIndex,
    build_index,
    build_index_from_arrays,
    read_embeddings,
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
    assert spec.resolve(100_000, 512).kind == "flat"
    assert spec.resolve(100_001, 512).kind == "hnsw"
    assert spec.resolve(2_000_000, 512).kind == "hnsw"
    big = spec.resolve(2_000_001, 512)
    assert big.kind == "ivfpq" and big.params["pq_m"] == 64 and big.params["nlist"] == 1414
    assert IndexSpec(exact_max=10).resolve(11, 8).kind == "hnsw"
    assert IndexSpec(kind="flat").resolve(10**8, 512).kind == "flat"
    assert IndexSpec(kind="ivfpq", nlist=8).resolve(1000, 32).params["nlist"] == 8
    with pytest.raises(ConfigError, match="kind"):
        IndexSpec(kind="lsh")
    with pytest.raises(ConfigError, match="at least"):
        IndexSpec(kind="ivfpq").resolve(100, 32)


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
        spec=IndexSpec(kind="hnsw", hnsw_m=16, ef_search=64),
    )
    assert index.kind == "hnsw" and index.manifest.params["m"] == 16
    assert recall(index, base, queries) >= 0.9
    reopened = VectorIndex.open(tmp_path / "idx")
    assert reopened.faiss_index.hnsw.efSearch == 64
    reopened.set_search_params(ef_search=200)
    assert reopened.faiss_index.hnsw.efSearch == 200
    assert recall(reopened, base, queries) >= 0.95


@pytest.mark.parametrize("refine", [False, True])
def test_ivfpq_builds_trains_and_applies_nprobe(tmp_path, refine):
    import faiss

    data = clustered(3040, 32, seed=4)
    base, queries = data[:3000], data[3000:]
    spec = IndexSpec(
        kind="ivfpq", nlist=16, pq_m=16, pq_bits=6, nprobe=16, refine=refine, refine_factor=10
    )
    index = build_index_from_arrays(ids_for(3000), base, tmp_path / "idx", model="m", spec=spec)
    for idx in (index, VectorIndex.open(tmp_path / "idx")):
        assert (
            faiss.extract_index_ivf(
                faiss.downcast_index(idx.faiss_index.base_index) if refine else idx.faiss_index
            ).nprobe
            == 16
        )
    r = recall(index, base, queries)
    assert r >= (0.95 if refine else 0.3)  # PQ codes are coarse; exact re-scoring recovers
    if refine:  # exact re-scoring: scores are true cosines
        scores, rows = index.search_vectors(queries, 5)
        np.testing.assert_allclose(
            scores, np.einsum("qd,qkd->qk", unit(queries), unit(base)[rows]), atol=1e-5
        )


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


def test_read_embeddings_tolerates_engine_schema(tmp_path):
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((40, 12))
    write_engine_dataset(
        tmp_path / "e", ids_for(40), vecs, dtype="float16", rows_per_part=15, sha256="ab" * 32
    )
    manifest, batch = read_embeddings(tmp_path / "e")
    assert manifest.dim == 12 and manifest.model_sha256 == "ab" * 32 and manifest.dtype == "float16"
    assert batch.vectors.dtype == np.float32 and batch.vectors.shape == (40, 12)
    np.testing.assert_allclose(batch.vectors, unit(vecs), atol=1e-3)
    assert batch.ids == ids_for(40)
    assert "embedding" not in batch.metadata.column_names
