"""Every bad input gets a 4xx JSON error naming the problem; nothing gives a 5xx."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import data_uri, png_bytes, start_server


def error_of(res: httpx.Response, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    err = res.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    return err["message"]


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def strict(tiny_model_dir, tiny_index):
    """A server with small limits and no local files allowed."""
    srv = start_server(
        model=str(tiny_model_dir),
        index=str(tiny_index),
        max_pixels=100 * 100,
        max_body_bytes=300_000,
        max_inputs=4,
        max_labels=3,
        max_text_chars=200,
        max_top_k=5,
    )
    yield srv
    srv.stop()


@pytest.fixture
def strict_http(strict):
    with httpx.Client(base_url=strict.url, timeout=60) as c:
        yield c


EMB_CASES = [
    ({"input": []}, 400, "input: give at least 1"),
    ({"input": [""]}, 400, "input[0]: the text is empty"),
    ({"input": ["ok", "   "]}, 400, "input[1]: the text is empty"),
    ({"input": "x", "dimensions": 16}, 400, "dimensions=16"),
    ({"input": "x", "model": "gpt-4"}, 400, "'gpt-4' is not served here"),
    ({"input": "x", "modality": "audio"}, 422, "modality"),
    ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "x", "temperature": 1}, 422, "temperature"),
    ({"input": 5}, 422, "input"),
    ({"input": [[101, 2023]]}, 422, "input"),
    ({}, 422, "input"),
]


@pytest.mark.parametrize(("body", "status", "needle"), EMB_CASES)
def test_embedding_request_errors(http, body, status, needle):
    assert needle in error_of(http.post("/v1/embeddings", json=body), status)


def test_bad_images_name_the_input(http, tmp_path, example_dir):
    truncated = png_bytes()[:60]
    cases = [
        ("data:image/png;base64,!!!notbase64", 400, "input[0]: invalid base64"),
        ("data:image/png,rawbytes", 400, "must be base64"),
        (data_uri(b"just some text, not an image"), 415, "input[0]"),
        (data_uri(truncated), 400, "input[0]"),
        ("data:image/png;base64,", 400, "empty"),
        ("http://example.org/x.png", 400, "only data: URIs"),
        ("file:///etc/passwd", 400, "outside the allowed directories"),
        ((example_dir / "nope.png").as_uri(), 400, "no such file"),
    ]
    for ref, status, needle in cases:
        body = {"input": [ref], "modality": "image"}
        assert needle in error_of(http.post("/v1/embeddings", json=body), status), ref
    # one bad image among good ones: the error names its position
    good = data_uri(png_bytes())
    body = {"input": [good, good, data_uri(truncated)], "modality": "image"}
    assert "input[2]" in error_of(http.post("/v1/embeddings", json=body), 400)


def test_limits(strict_http):
    big = Image.new("RGB", (300, 300), (10, 20, 30))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    msg = error_of(
        strict_http.post("/v1/embeddings", json={"input": [data_uri(buf.getvalue())]}), 413
    )
    assert "input[0]" in msg
    assert "limit is 4" in error_of(
        strict_http.post("/v1/embeddings", json={"input": ["a"] * 5}), 413
    )
    assert "request body exceeds" in error_of(
        strict_http.post("/v1/embeddings", json={"input": ["a " * 200_000]}), 413
    )
    assert "exceeds the limit of 200" in error_of(
        strict_http.post("/v1/embeddings", json={"input": ["chest " * 50]}), 413
    )
    labels = ["a", "b", "c", "d"]
    body = {"image": data_uri(png_bytes()), "labels": labels}
    assert "labels: 4 given" in error_of(strict_http.post("/v1/classify", json=body), 413)
    assert "top_k=6" in error_of(
        strict_http.post("/v1/search", json={"text": "x", "top_k": 6}), 400
    )
    local = "file:///" + "tmp/x.png"
    assert "--allow-files" in error_of(
        strict_http.post("/v1/embeddings", json={"input": [local]}), 400
    )


def test_classify_errors(http):
    img = data_uri(png_bytes())
    cases = [
        ({"image": img, "labels": []}, 400, "labels: give at least 1"),
        ({"image": img, "labels": ["a", " "]}, 400, "label #2 is empty"),
        ({"image": img, "labels": ["a", "a"]}, 400, "duplicate labels"),
        ({"image": img, "labels": ["a"], "templates": ["no placeholder"]}, 422, "placeholder"),
        ({"image": img, "labels": ["a"], "templates": []}, 400, "no templates"),
        ({"image": img, "labels": ["a"], "top_k": 0}, 422, "top_k"),
        ({"image": "nonsense!", "labels": ["a"]}, 400, "image[0]"),
        ({"labels": ["a"]}, 422, "image"),
    ]
    for body, status, needle in cases:
        assert needle in error_of(http.post("/v1/classify", json=body), status), body


def test_search_errors(http, server):
    cases = [
        ({}, 400, "exactly one of text, image, embedding or item (got none)"),
        ({"text": "a", "item": 0}, 400, "got text, item"),
        ({"text": "a", "top_k": 0}, 422, "top_k"),
        ({"text": "a", "top_k": 10_000}, 400, "top_k=10000"),
        ({"text": ""}, 400, "empty"),
        ({"embedding": [0.1] * 7}, 400, "need 32 finite numbers"),
        ({"embedding": [0.0] * 32}, 400, "not all zero"),
        ({"item": 99}, 400, "the index has 12 rows"),
        ({"item": 10}, 400, "has no image"),
        ({"item": -1}, 422, "item"),
        ({"text": "a", "modality": "video"}, 422, "modality"),
    ]
    for body, status, needle in cases:
        assert needle in error_of(http.post("/v1/search", json=body), status), body
    assert "has no image" in error_of(http.get("/v1/items/10/thumbnail"), 400)
    assert "index has 12 rows" in error_of(http.get("/v1/items/500/thumbnail"), 400)
    assert "size" in error_of(http.get("/v1/items/0/thumbnail?size=5000"), 400)
    error_of(http.get("/v1/items/abc/thumbnail"), 422)


def test_explain_errors(http):
    img = data_uri(png_bytes())
    cases = [
        ({"image": img, "text": ""}, 400, "text[0]: the text is empty"),
        ({"image": img, "text": "a", "method": "lime"}, 422, "method"),
        ({"image": img, "text": "a", "alpha": 2}, 422, "alpha"),
        ({"image": data_uri(b"GIF89a broken"), "text": "a"}, 415, "image"),
    ]
    for body, status, needle in cases:
        assert needle in error_of(http.post("/v1/explain", json=body), status), body


def test_protocol_errors(http):
    error_of(http.get("/v1/nothing"), 404)
    error_of(http.get("/v1/embeddings"), 405)
    assert "JSON" in error_of(
        http.post(
            "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )
    error_of(http.post("/v1/embeddings", content=b"input=x"), 422)
    nan = b'{"embedding": [NaN' + b", 0.1" * 31 + b"]}"
    res = http.post("/v1/search", content=nan, headers={"content-type": "application/json"})
    assert res.status_code in (400, 422) and "error" in res.json()


def test_no_index_and_not_ready(tiny_model_dir):
    srv = start_server(model=str(tiny_model_dir))
    try:
        msg = error_of(httpx.post(srv.url + "/v1/search", json={"text": "x"}), 400)
        assert "--index" in msg
    finally:
        srv.stop()
    from biomedclip.serve import ServeSettings, create_app
    from tests.serve.conftest import LiveServer

    idle = LiveServer(create_app(ServeSettings(model=str(tiny_model_dir)), load=False))
    idle.thread.start()
    try:
        for _ in range(200):
            try:
                live = httpx.get(idle.url + "/health/live")
                break
            except httpx.TransportError:
                import time

                time.sleep(0.05)
        assert live.status_code == 200
        ready = httpx.get(idle.url + "/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        res = httpx.post(idle.url + "/v1/embeddings", json={"input": "x"})
        assert "loading" in error_of(res, 503) and res.headers["retry-after"] == "5"
    finally:
        idle.stop()


def test_failed_model_load_is_reported_without_retry_after(tmp_path):
    from biomedclip.serve import ServeSettings, create_app
    from tests.serve.conftest import LiveServer

    srv = LiveServer(create_app(ServeSettings(model=str(tmp_path / "missing"))))
    srv.thread.start()
    import time

    for _ in range(600):
        try:
            body = httpx.get(srv.url + "/health/ready").json()
            if body["status"] == "error":
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        assert body["status"] == "error" and "missing" in body["detail"]
        res = httpx.get(srv.url + "/v1/models")
        assert "missing" in error_of(res, 503) and "retry-after" not in res.headers
    finally:
        srv.stop()


def test_unit_vectors_even_for_odd_images(http):
    """Palette, alpha, grey and 1-pixel images still embed to unit vectors."""
    images = []
    for mode, size in (("P", (7, 3)), ("RGBA", (1, 1)), ("L", (500, 20)), ("I;16", (33, 33))):
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, format="PNG")
        images.append(data_uri(buf.getvalue()))
    res = http.post("/v1/embeddings", json={"input": images})
    assert res.status_code == 200, res.text
    vecs = np.array([d["embedding"] for d in res.json()["data"]])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
