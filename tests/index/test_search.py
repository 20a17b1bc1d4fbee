"""Searcher (model + index) and the `index` / `search` CLI, with the tiny random-weight model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import biomedclip
from biomedclip.index import ModelMismatchError, Searcher, VectorIndex, build_index
from biomedclip.index.manifest import IndexManifest
from biomedclip.index.search import model_identity
from tests.conftest import run_main

from .conftest import brute_force_top_k, write_engine_dataset

TEXTS = [
    "chest x ray",
    "brain mri",
    "bone x ray",
    "lung tumor ct",
    "histopathology slide stain",
    "a red circle",
    "a blue square",
    "normal lung",
    "malignant carcinoma",
    "benign scan",
]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return biomedclip.load(tiny_model_dir)


@pytest.fixture(scope="module")
def corpus(loaded, example_images, tiny_model_dir, tmp_path_factory):
    """An embeddings dataset of the 9 example images + 10 texts, and its index."""
    model, preprocess, tokenizer = loaded
    with torch.inference_mode():
        pix = torch.stack([preprocess(biomedclip.load_image(p, mode=None)) for p in example_images])
        img = model.encode_image(pix, normalize=True).numpy()
        tb = tokenizer(TEXTS)
        txt = model.encode_text(tb.input_ids, tb.attention_mask, normalize=True).numpy()
    d = tmp_path_factory.mktemp("corpus")
    ids = [p.name for p in example_images] + [f"t{i}" for i in range(len(TEXTS))]
    write_engine_dataset(
        d / "emb",
        ids,
        np.concatenate([img, txt]),
        model=str(tiny_model_dir),
        modality=["image"] * len(img) + ["text"] * len(txt),
        paths=[str(p) for p in example_images] + [None] * len(TEXTS),
        texts=[None] * len(img) + TEXTS,
    )
    build_index(d / "emb", d / "idx")
    return {"dir": d, "ids": ids, "vectors": np.concatenate([img, txt]), "images": example_images}


def test_text_search_equals_brute_force(loaded, corpus):
    model, preprocess, tokenizer = loaded
    searcher = Searcher.from_model(
        model, corpus["dir"] / "idx", preprocess=preprocess, tokenizer=tokenizer
    )
    queries = ["lung ct", "a red square"]
    hits = searcher.search_text(queries, k=5)
    with torch.inference_mode():
        tb = tokenizer(queries)
        q = model.encode_text(tb.input_ids, tb.attention_mask).numpy()
    want_scores, _ = brute_force_top_k(corpus["vectors"], q, 5)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    for qh, ws, qv in zip(hits, want_scores, q):
        np.testing.assert_allclose([h.score for h in qh], ws, atol=1e-5)
        for h in qh:  # every hit's score is its true cosine with the query
            assert h.score == pytest.approx(float(corpus["vectors"][h.row] @ qv), abs=1e-5)


def test_image_query_finds_itself_and_modality_filter(loaded, corpus):
    model, preprocess, tokenizer = loaded
    searcher = Searcher.from_model(
        model, corpus["dir"] / "idx", preprocess=preprocess, tokenizer=tokenizer
    )
    query = corpus["images"][3]
    top = searcher.search_image(query, k=3)[0]
    assert top[0].id == query.name and top[0].score == pytest.approx(1.0, abs=1e-4)
    assert top[0].metadata["path"] == str(query) and top[0].metadata["modality"] == "image"
    texts_only = searcher.search_image(query, k=4, modality="text")[0]
    assert len(texts_only) == 4 and {h.metadata["modality"] for h in texts_only} == {"text"}
    assert [h.rank for h in texts_only] == [1, 2, 3, 4]
    assert all(a.score >= b.score for a, b in zip(texts_only, texts_only[1:]))


def test_image_queries_go_through_the_encoder_and_bad_ones_do_not_stop_the_rest(
    loaded, corpus, tmp_path
):
    model, preprocess, tokenizer = loaded
    searcher = Searcher.from_model(model, corpus["dir"] / "idx")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = corpus["images"][5]
    res = searcher.search_images([bad, good, good.read_bytes()], k=2)
    assert res.hits[0] is None and [f.path for f in res.failures] == [str(bad)]
    assert res.hits[1][0].id == good.name and res.hits[2][0].id == good.name
    encoded = searcher.encoder.encode_images([good])
    np.testing.assert_allclose(searcher.embed_images([good])[0], encoded.embeddings, atol=1e-6)


def test_other_model_is_refused(loaded, corpus, tmp_path):
    model, preprocess, tokenizer = loaded
    other = biomedclip.load(
        biomedclip.ModelConfig.tiny(vocab_size=tokenizer.vocab_size), tokenizer=tokenizer
    )[0]
    with pytest.raises(ModelMismatchError) as e:
        Searcher.from_model(other, corpus["dir"] / "idx", tokenizer=tokenizer)
    assert "random init" in str(e.value) and str(corpus["dir"]) not in str(e.value)
    assert "tiny_model" in str(e.value)


def test_model_identity_rules(tmp_path):
    (tmp_path / "m").mkdir()
    m = IndexManifest(str(tmp_path / "m"), None, 8, True, "inner_product", "flat", {}, 0, "x")
    m.check_model(str(tmp_path / "m" / "."), None, 8)  # same directory spelled differently
    with pytest.raises(ModelMismatchError, match="dimensions differ"):
        m.check_model(str(tmp_path / "m"), None, 16)
    with pytest.raises(ModelMismatchError, match="sources differ"):
        m.check_model("hf-hub:org/other", None, 8)
    s = IndexManifest("hf-hub:org/a", "a" * 64, 8, True, "inner_product", "flat", {}, 0, "x")
    s.check_model("/some/copy/of/the/weights.bin", "a" * 64, 8)  # same weights, other path
    with pytest.raises(ModelMismatchError, match="weights differ"):
        s.check_model("hf-hub:org/a", "b" * 64, 8)


def test_model_identity_of_loaded_model(loaded, tiny_model_dir):
    source, sha, dim = model_identity(loaded[0])
    assert source == str(tiny_model_dir) and dim == 32


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_build_info_search_add(capsys, corpus, tmp_path, tiny_model_dir):
    emb = corpus["dir"] / "emb"
    code, out, _ = run_main(capsys, "index", "build", emb, "--out", tmp_path / "idx", "--json")
    assert code == 0 and json.loads(out)["kind"] == "flat" and json.loads(out)["count"] == 19
    assert json.loads(out)["tuning"]["exact"] is True
    code, out, _ = run_main(
        capsys,
        "index",
        "build",
        emb,
        "--out",
        tmp_path / "h",
        "--kind",
        "hnsw",
        "--hnsw-m",
        "8",
        "--json",
    )
    assert code == 0 and json.loads(out)["params"]["m"] == 8
    code, out, _ = run_main(capsys, "index", "info", tmp_path / "idx")
    assert code == 0 and "flat" in out and "19" in out

    # text and image queries; the model defaults to the index's
    code, out, _ = run_main(
        capsys,
        "search",
        "brain mri",
        "--image",
        corpus["images"][0],
        "--index",
        tmp_path / "idx",
        "-k",
        "3",
        "--json",
    )
    assert code == 0
    res = json.loads(out)
    assert [r["query_type"] for r in res] == ["text", "image"]
    assert all(len(r["results"]) == 3 for r in res)
    assert res[1]["results"][0]["id"] == corpus["images"][0].name
    assert {"rank", "score", "id", "path", "text", "modality"} <= set(res[0]["results"][0])
    code, out, _ = run_main(
        capsys,
        "search",
        "brain mri",
        "--index",
        tmp_path / "idx",
        "--model",
        tiny_model_dir,
        "--modality",
        "text",
    )
    assert code == 0 and "brain mri" in out and "image" not in out.split("query")[1]
    code, out, _ = run_main(  # metadata filter + autocast precision + image options
        capsys,
        "search",
        "--image",
        corpus["images"][1],
        "--index",
        tmp_path / "idx",
        "--where",
        "modality=image",
        "--precision",
        "bf16",
        "--window",
        "lung",
        "--json",
    )
    res = json.loads(out)[0]["results"]
    assert code == 0 and res[0]["id"] == corpus["images"][1].name
    assert {r["modality"] for r in res} == {"image"}
    code, _, err = run_main(capsys, "search", "x", "--index", tmp_path / "idx", "--where", "nope=1")
    assert code == 2 and "unknown column 'nope'" in err

    # add: new rows are searchable, repeated rows skipped
    new = write_engine_dataset(
        tmp_path / "more", ["n1", "n2"], corpus["vectors"][:2] * -1, model=str(tiny_model_dir)
    )
    code, out, _ = run_main(capsys, "index", "add", new, "--index", tmp_path / "idx", "--json")
    assert code == 0 and json.loads(out) == {
        "added": 2,
        "skipped_duplicates": 0,
        "total": 21,
        "index": str(tmp_path / "idx"),
    }
    code, out, _ = run_main(capsys, "index", "add", new, "--index", tmp_path / "idx")
    assert code == 0 and "added 0" in out
    assert len(VectorIndex.open(tmp_path / "idx")) == 21


def test_cli_refuses_other_model_and_bad_input(capsys, corpus, tmp_path, tiny_tokenizer):
    other = tmp_path / "other_model"
    torch.manual_seed(1)
    biomedclip.BiomedCLIP(
        biomedclip.ModelConfig.tiny(vocab_size=tiny_tokenizer.vocab_size)
    ).save_pretrained(other, tokenizer=tiny_tokenizer)
    code, _, err = run_main(
        capsys, "search", "brain", "--index", corpus["dir"] / "idx", "--model", other
    )
    assert code == 2 and "other_model" in err and "tiny_model" in err
    code, _, err = run_main(capsys, "search", "--index", corpus["dir"] / "idx")
    assert code == 2 and "QUERY" in err
    code, _, err = run_main(capsys, "search", "x", "--index", tmp_path / "nowhere")
    assert code == 2 and "not an index directory" in err
    code, _, err = run_main(capsys, "index", "build", tmp_path / "nowhere", "--out", tmp_path / "i")
    assert code == 2 and "manifest" in err
