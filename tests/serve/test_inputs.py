"""Inputs recognised, not guessed; mixed text+image requests; classifier prompts via the batcher;
status codes that tell fault from blame; signed thumbnails; fixed metric labels; offline /docs."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import pytest

from biomedclip.errors import ImageDependencyError, InputError
from tests.serve.conftest import data_uri, png_bytes, start_server
from tests.serve.test_errors import error_of


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def vectors(res: httpx.Response) -> np.ndarray:
    assert res.status_code == 200, res.text
    return np.array([d["embedding"] for d in res.json()["data"]], np.float32)


def test_bare_base64_image_is_an_image_and_text_stays_text(http, example_image):
    raw = example_image.read_bytes()
    bare = http.post("/v1/embeddings", json={"input": [base64.b64encode(raw).decode()]})
    assert bare.status_code == 200, bare.text[:300]
    assert bare.json()["modality"] == "image"
    uri = http.post("/v1/embeddings", json={"input": [data_uri(raw, "image/jpeg")]})
    assert float(vectors(bare)[0] @ vectors(uri)[0]) > 0.9999
    # base64-looking words and sentences, and absolute paths that are not images, are texts
    for text in ("QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "/usr/share/dict", "chest x-ray"):
        assert http.post("/v1/embeddings", json={"input": [text]}).json()["modality"] == "text"


def test_absolute_paths_are_images_only_when_allowed(http, example_image):
    res = http.post("/v1/embeddings", json={"input": [str(example_image)]})
    assert res.json()["modality"] == "image"
    uri = http.post("/v1/embeddings", json={"input": [data_uri(example_image, "image/jpeg")]})
    assert float(vectors(res)[0] @ vectors(uri)[0]) > 0.9999
    msg = error_of(http.post("/v1/embeddings", json={"input": ["/etc/x-ray.png"]}), 400)
    assert "outside the allowed directories" in msg


def test_mixed_text_and_image_inputs_equal_single_modality(http, example_image):
    img = data_uri(example_image, "image/jpeg")
    text = "chest x-ray showing pleural effusion"
    mixed = http.post("/v1/embeddings", json={"input": [text, img]})
    body = mixed.json()
    assert body["modality"] == "mixed"
    assert [d["modality"] for d in body["data"]] == ["text", "image"]
    assert [d["index"] for d in body["data"]] == [0, 1]
    both = vectors(mixed)
    t = vectors(http.post("/v1/embeddings", json={"input": [text], "modality": "text"}))[0]
    i = vectors(http.post("/v1/embeddings", json={"input": [img], "modality": "image"}))[0]
    assert float(both[0] @ t) >= 0.9999 and float(both[1] @ i) >= 0.9999
    assert body["usage"]["prompt_tokens"] > 0
    # errors name each input's own position in a mixed request
    bad = http.post("/v1/embeddings", json={"input": [img, "  "]})
    assert "input[1]: the text is empty" in error_of(bad, 400)


def test_encoding_format_base64_is_little_endian_float32(http):
    res = http.post("/v1/embeddings", json={"input": ["brain mri"], "encoding_format": "base64"})
    raw = base64.b64decode(res.json()["data"][0]["embedding"])
    vec = np.frombuffer(raw, "<f4")
    ref = vectors(http.post("/v1/embeddings", json={"input": ["brain mri"]}))[0]
    assert np.allclose(vec, ref, atol=1e-6)


def test_classifier_prompts_go_through_the_batcher_and_match_the_engine(server):
    rt = server.runtime
    from biomedclip.zeroshot import TEMPLATE_SETS

    labels = ("pneumonia", "normal chest x-ray", "brain tumour")
    before = rt.text.submitted
    weights = asyncio.run(rt.classifier(labels, "paper"))
    assert rt.text.submitted - before == len(labels) * len(TEMPLATE_SETS["paper"])
    ref = rt.encoder.classifier(list(labels), "paper").float()
    assert float((weights * ref).sum(-1).min()) >= 0.9999
    assert asyncio.run(rt.classifier(labels, "paper")) is weights  # cached


def test_prompt_and_template_limits(http):
    img = data_uri(png_bytes())
    body = {"image": img, "labels": ["a", "b", "c"], "templates": ["{} x"] * 100}
    assert "300 prompts" in error_of(http.post("/v1/classify", json=body), 413)
    body = {"image": img, "labels": ["a"], "templates": "{}" + "x" * 400}
    assert "characters exceeds" in error_of(http.post("/v1/classify", json=body), 413)
    body = {"image": img, "labels": ["a"], "templates": "{} and {name}"}
    assert "'{} and {name}': only a bare" in error_of(http.post("/v1/classify", json=body), 422)


def test_data_uri_scheme_and_base64_marker_are_case_insensitive(http, example_image):
    """Issue 24: ``DATA:image/png;base64,...`` was embedded as text."""
    from biomedclip.client import image_data_uri

    raw = base64.b64encode(example_image.read_bytes()).decode()
    ref = vectors(http.post("/v1/embeddings", json={"input": ["data:image/jpeg;base64," + raw]}))
    variants = ["DATA:image/jpeg;base64,", "Data:IMAGE/JPEG;BASE64,", "data:image/jpeg;Base64,"]
    for prefix in variants:
        res = http.post("/v1/embeddings", json={"input": [prefix + raw, "chest x-ray"]})
        assert [d["modality"] for d in res.json()["data"]] == ["image", "text"], prefix
        assert float(vectors(res)[0] @ ref[0]) > 0.9999, prefix
        assert image_data_uri(prefix + raw) == prefix + raw  # the client sends it as given
    body = {"image": variants[0] + raw, "labels": ["chest x-ray", "brain mri"]}
    assert http.post("/v1/classify", json=body).status_code == 200
    res = http.post("/v1/embeddings", json={"input": ["DATA:image/png,abc"], "modality": "image"})
    assert "must be base64-encoded" in error_of(res, 400)
    url = "FILE://" + str(example_image)
    assert http.post("/v1/embeddings", json={"input": [url]}).json()["modality"] == "image"


def test_server_faults_are_500_not_the_clients(http, server, monkeypatch):
    rt = server.runtime

    def corrupt(*a, **k):
        raise InputError("index: 3 metadata rows for 12 vectors")

    monkeypatch.setattr(rt.searcher, "search_vectors", corrupt)
    res = http.post("/v1/search", json={"text": "chest"})
    assert res.status_code == 500 and res.json()["error"]["code"] == "index_error", res.text
    monkeypatch.undo()

    def missing(*a, **k):
        raise ImageDependencyError("JPEG 2000 needs pylibjpeg-openjpeg", "image")

    monkeypatch.setattr(rt.resolver, "image", missing)
    res = http.post("/v1/embeddings", json={"input": [data_uri(png_bytes())]})
    assert res.status_code == 500, res.text
    assert res.json()["error"]["code"] == "server_missing_dependency"


def test_metric_labels_come_from_a_fixed_set(http):
    http.request("FROBNICATE", "/v1/models")
    http.request("PROPFIND", "/health/live")
    text = http.get("/metrics").text
    assert "FROBNICATE" not in text and "PROPFIND" not in text
    methods = {
        line.split('method="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("biomedclip_requests_total")
    }
    assert methods <= {"GET", "POST", "HEAD", "OPTIONS", "other"}


def test_docs_work_offline(http):
    page = http.get("/docs")
    assert page.status_code == 200
    assert "cdn.jsdelivr" not in page.text and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert http.get("/docs-assets/swagger-ui.css").status_code == 200


def test_api_key_only_in_the_header_and_signed_thumbnails(tiny_model_dir, tiny_index):
    srv = start_server(model=str(tiny_model_dir), index=str(tiny_index), api_key="s3cret")
    try:
        good = {"Authorization": "Bearer s3cret"}
        hits = httpx.post(
            srv.url + "/v1/search", json={"text": "chest x-ray", "top_k": 12}, headers=good
        ).json()["hits"]
        hit = next(h for h in hits if h["has_image"])
        url = srv.url + hit["thumbnail"]
        assert "s3cret" not in url and "sig=" in url
        res = httpx.get(url)  # no header: the signature admits it
        assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
        assert httpx.get(url.replace("sig=", "sig=0")).status_code == 401
        other_row = url.replace(f"/items/{hit['row']}/", f"/items/{hit['row'] + 1}/")
        assert httpx.get(other_row).status_code == 401
        plain = f"{srv.url}/v1/items/{hit['row']}/thumbnail"
        assert httpx.get(plain + "?api_key=s3cret").status_code == 401
        assert httpx.get(plain, headers=good).status_code == 200
    finally:
        srv.stop()


def test_service_pixel_cap_defaults_to_one_replicas_memory(http):
    from benchmarks import _bombs as bombs

    from biomedclip.serve import ServeSettings

    assert ServeSettings().max_pixels == 4096 * 4096
    volume = bombs.nifti_gz_bomb(shape=(1024, 1024, 64))  # 64 M voxels from ~70 KB
    body = {"input": [data_uri(volume, "application/octet-stream")]}
    assert "pixel limit of 16777216" in error_of(http.post("/v1/embeddings", json=body), 413)
