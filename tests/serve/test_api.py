"""Every route of the live service, answered over real HTTP by uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serve.conftest import data_uri


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_health_models_metrics_openapi_and_app(http, server):
    assert http.get("/health/live").json()["status"] == "ok"
    assert http.get("/health/ready").json()["status"] == "ok"
    card = http.get("/v1/models").json()["data"][0]
    info = server.runtime.model.load_info
    assert card["sha256"] == info.sha256 and len(card["sha256"]) == 64
    assert (card["dimensions"], card["context_length"], card["image_size"]) == (32, 64, 32)
    assert card["index_size"] == 12
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "biomedclip_model_load_seconds" in metrics.text
    line = 'biomedclip_requests_total{method="GET",route="/v1/models",status="200"}'
    # behind Ray Serve's proxy /metrics is one replica's, which may not have served /v1/models
    family = line.split("{")[0] if getattr(server, "replicated", False) else line
    assert family in metrics.text
    schema = http.get("/openapi.json").json()
    for path in ("/v1/embeddings", "/v1/classify", "/v1/search", "/v1/explain", "/v1/models"):
        assert path in schema["paths"]
    page = http.get("/")
    assert page.status_code == 200 and "Research use only" in page.text
    for asset in ("/static/app.js", "/static/app.css"):
        assert http.get(asset).status_code == 200
    rid = http.get("/health/live", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    assert rid == "abc-123"
    own = http.get("/health/live").headers["x-request-id"]  # one id, ours or Ray's proxy's
    assert "," not in own and len(own) == (36 if getattr(server, "replicated", False) else 16)


def test_text_embeddings_match_the_engine_float_and_base64(http, server):
    texts = ["chest x ray", "brain mri scan", "a photo of a red circle"]
    res = http.post("/v1/embeddings", json={"input": texts, "model": "biomedclip"}).json()
    assert res["object"] == "list" and res["modality"] == "text"
    got = np.array([d["embedding"] for d in res["data"]], np.float32)
    want = server.runtime.encoder.encode_texts(texts).embeddings
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert [d["index"] for d in res["data"]] == [0, 1, 2]
    assert res["usage"]["prompt_tokens"] == res["usage"]["total_tokens"] > len(texts) * 2
    b64 = http.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()
    decoded = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in b64["data"]]
    )
    np.testing.assert_array_equal(decoded, got)
    one = http.post("/v1/embeddings", json={"input": "chest x ray", "dimensions": 32}).json()
    np.testing.assert_allclose(one["data"][0]["embedding"], got[0], atol=1e-6)


def test_overlong_text_is_truncated_and_reported(http):
    res = http.post("/v1/embeddings", json={"input": ["chest " * 200, "brain"]}).json()
    assert res["truncated"] == [0]
    assert res["usage"]["prompt_tokens"] == 64 + 3


def test_image_embeddings_from_data_uris_and_allowed_files(http, server, example_dir):
    paths = [example_dir / "chest_X-ray.jpg", example_dir / "brain_MRI.jpg"]
    res = http.post("/v1/embeddings", json={"input": [data_uri(p) for p in paths]}).json()
    assert res["modality"] == "image" and res["usage"]["prompt_tokens"] == 0
    got = np.array([d["embedding"] for d in res["data"]], np.float32)
    want = server.runtime.encoder.encode_images([str(p) for p in paths]).embeddings
    np.testing.assert_allclose(got, want, atol=1e-5)
    files = http.post("/v1/embeddings", json={"input": [p.as_uri() for p in paths]}).json()
    np.testing.assert_allclose(np.array([d["embedding"] for d in files["data"]]), got, atol=1e-6)


def test_dicom_and_16bit_inputs_go_through_the_project_reader(http):
    import io

    import pydicom.data
    from PIL import Image

    dcm = pydicom.data.get_testdata_file("CT_small.dcm")
    arr = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    inputs = [data_uri(Path(dcm).read_bytes(), "application/dicom"), data_uri(buf.getvalue())]
    res = http.post("/v1/embeddings", json={"input": inputs, "modality": "image"})
    assert res.status_code == 200, res.text
    vecs = np.array([d["embedding"] for d in res.json()["data"]])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_classify_matches_zero_shot(http, server, example_image):
    import biomedclip

    labels = ["chest x ray", "brain mri", "bone x ray"]
    res = http.post("/v1/classify", json={"image": data_uri(example_image), "labels": labels})
    assert res.status_code == 200, res.text
    probs = {p["label"]: p["probability"] for p in res.json()["probabilities"]}
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    ref = biomedclip.zero_shot(server.runtime.model, [str(example_image)], labels).to_dicts()[0]
    for label in labels:
        assert probs[label] == pytest.approx(ref[label], abs=1e-5)
    top1 = http.post(
        "/v1/classify",
        json={"image": data_uri(example_image), "labels": labels, "top_k": 1, "templates": "paper"},
    ).json()
    assert len(top1["probabilities"]) == 1


def test_search_by_text_image_embedding_and_item(http, server, example_image):
    by_text = http.post("/v1/search", json={"text": "chest x ray", "top_k": 5}).json()
    assert by_text["query"] == "text" and len(by_text["hits"]) == 5
    scores = [h["score"] for h in by_text["hits"]]
    assert scores == sorted(scores, reverse=True)
    by_image = http.post(
        "/v1/search", json={"image": data_uri(example_image), "top_k": 3, "modality": "image"}
    ).json()
    top = by_image["hits"][0]
    assert top["id"] == "chest_X-ray" and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert all(h["modality"] == "image" and h["has_image"] for h in by_image["hits"])
    assert top["caption"] == "chest X-ray"
    texts = http.post("/v1/search", json={"text": "brain", "modality": "text"}).json()["hits"]
    assert {h["modality"] for h in texts} == {"text"} and len(texts) == 3
    vec = server.runtime.encoder.encode_texts(["brain mri"]).embeddings[0]
    by_vec = http.post("/v1/search", json={"embedding": vec.tolist(), "top_k": 1}).json()
    assert by_vec["hits"][0]["id"] == "text-1"
    row = top["row"]
    by_item = http.post("/v1/search", json={"item": row, "top_k": 1}).json()
    assert by_item["query"] == "item" and by_item["hits"][0]["row"] == row
    thumb = http.get(f"/v1/items/{row}/thumbnail", params={"size": 64})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"


def test_explain_returns_png_and_grid(http, example_image):
    for method in ("grad-cam", "patch-similarity"):
        res = http.post(
            "/v1/explain",
            json={"image": data_uri(example_image), "text": "chest x ray", "method": method},
        )
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["method"] == method and np.array(body["grid"]).shape == (4, 4)
        png = base64.b64decode(body["png"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
