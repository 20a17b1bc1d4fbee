"""The service probed as an attacker: every hostile request gets a 4xx within the request timeout,
the server's RSS stays within a stated bound of idle, and /health/ready tells the truth throughout.

The server runs in this process (a uvicorn thread), so its RSS is this process's RSS, sampled
every 5 ms while the attacks run.
"""

from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import psutil
import pytest
from benchmarks import _bombs as bombs

from tests.serve.conftest import data_uri, png_bytes, start_server

TIMEOUT_S = 4.0
RSS_BOUND_MIB = 150  # peak RSS above idle while the whole attack suite runs


@pytest.fixture(scope="module")
def target(tiny_model_dir):
    srv = start_server(
        model=str(tiny_model_dir),
        max_pixels=1_000_000,
        max_body_bytes=2 * 2**20,
        request_timeout_s=TIMEOUT_S,
        max_concurrent_requests=16,
    )
    yield srv
    srv.stop()


class Watch:
    """Samples RSS and /health/ready in the background."""

    def __init__(self, url: str):
        self.url, self.proc = url, psutil.Process()
        self.peak = self.idle = self.proc.memory_info().rss
        self.ready_codes: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rss), threading.Thread(target=self._ready)]

    def _rss(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def _ready(self):
        with httpx.Client(timeout=5) as c:
            while not self._stop.is_set():
                self.ready_codes.append(c.get(self.url + "/health/ready").status_code)
                time.sleep(0.05)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.idle) / 2**20


def hostile_requests() -> dict[str, tuple[str, dict]]:
    """name -> (route, JSON body)."""
    img = data_uri(png_bytes())
    uri = lambda b: data_uri(b, "application/octet-stream")  # noqa: E731
    return {
        "deflated-dicom-bomb": ("/v1/embeddings", {"input": [uri(bombs.deflated_dicom_bomb())]}),
        "nifti-gz-bomb": ("/v1/embeddings", {"input": [uri(bombs.nifti_gz_bomb())]}),
        "nifti-gz-4d-bomb": (
            "/v1/embeddings",
            {"input": [uri(bombs.nifti_gz_bomb(shape=(100, 100, 1, 30000)))]},
        ),
        "jpeg-in-dicom-lying": (
            "/v1/classify",
            {"image": uri(bombs.jpeg_dicom_lying_about_size()), "labels": ["a"]},
        ),
        "png-60k": ("/v1/embeddings", {"input": [uri(bombs.png_declaring(60_000, 60_000))]}),
        "jpeg-60k": ("/v1/search", {"image": uri(bombs.jpeg_declaring(60_000, 60_000))}),
        "tiff-60k": ("/v1/embeddings", {"input": [uri(bombs.tiff_declaring(60_000, 60_000))]}),
        "bare-base64-png-bomb": (
            "/v1/embeddings",
            {"input": [base64.b64encode(bombs.png_declaring(60_000, 60_000)).decode()]},
        ),
        "4096-prompts": (
            "/v1/classify",
            {
                "image": img,
                "labels": [f"label {i}" for i in range(64)],
                "templates": [f"{{}} variant {j}" for j in range(64)],
            },
        ),
        "64kb-template": (
            "/v1/classify",
            {"image": img, "labels": ["a", "b"], "templates": "{} " + "x" * 65_536},
        ),
        "64kb-label": ("/v1/classify", {"image": img, "labels": ["x" * 65_536]}),
        "braces-template": ("/v1/classify", {"image": img, "labels": ["a"], "templates": "{0}{1}"}),
        "format-spec-template": (
            "/v1/classify",
            {"image": img, "labels": ["a", "b"], "templates": [bombs.template_format_spec()] * 8},
        ),
        "upper-case-data-uri-bomb": (
            "/v1/embeddings",
            {
                "input": [
                    "DATA:image/png;BASE64,"
                    + base64.b64encode(bombs.png_declaring(60_000, 60_000)).decode()
                ]
            },
        ),
        "unlisted-path": ("/v1/embeddings", {"input": ["/etc/shadow.png"]}),
        "explain-bomb": (
            "/v1/explain",
            {"image": uri(bombs.deflated_dicom_bomb()), "text": "x"},
        ),
    }


def raw_request(port: int, head: bytes, body_parts: list[bytes], pause: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S + 10) as s:
        s.sendall(head)
        for part in body_parts:
            try:
                s.sendall(part)
            except OSError:
                break
            time.sleep(pause)
        s.shutdown(socket.SHUT_WR) if not body_parts else None
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_every_hostile_request_gets_a_4xx_and_memory_stays_bounded(target):
    cases = hostile_requests()
    with httpx.Client(base_url=target.url, timeout=TIMEOUT_S + 10) as c:
        c.post("/v1/embeddings", json={"input": [data_uri(png_bytes())]})  # warm
        with Watch(target.url) as watch:
            for name, (route, body) in cases.items():
                start = time.monotonic()
                res = c.post(route, json=body)
                seconds = time.monotonic() - start
                assert 400 <= res.status_code < 500, (name, res.status_code, res.text[:300])
                assert res.json()["error"]["code"], name
                assert seconds < TIMEOUT_S + 1, (name, seconds)
            # a body beyond the payload limit, declared or streamed (chunked)
            big = c.post("/v1/embeddings", json={"input": ["a " * 1_500_000]})
            assert big.status_code == 413, big.text

            def chunks():
                yield b'{"input": ["'
                for _ in range(40):
                    yield b"a" * 65536
                yield b'"]}'

            streamed = c.post(
                "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413, streamed.text
            # truncated multipart and truncated JSON
            part = b'--xx\r\nContent-Disposition: form-data; name="input"\r\n\r\nabc'  # no end
            res = c.post(
                "/v1/embeddings",
                content=part,
                headers={"content-type": "multipart/form-data; boundary=xx"},
            )
            assert 400 <= res.status_code < 500, res.text
            res = c.post(
                "/v1/embeddings",
                content=b'{"input": ["ab',
                headers={"content-type": "application/json"},
            )
            assert 400 <= res.status_code < 500, res.text
            # a slow client: declares 100 bytes, trickles 10 of them
            head = (
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n"
            )
            start = time.monotonic()
            answer = raw_request(target.port, head, [b"{"] * 10, pause=0.6)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert time.monotonic() - start < TIMEOUT_S + 3
            ok = c.post("/v1/embeddings", json={"input": ["chest x-ray", data_uri(png_bytes())]})
            assert ok.status_code == 200, ok.text
    assert watch.ready_codes and set(watch.ready_codes) == {200}, set(watch.ready_codes)
    assert watch.growth_mib < RSS_BOUND_MIB, f"RSS grew {watch.growth_mib:.0f} MiB"


def test_concurrency_limit_answers_429_with_retry_after(tiny_model_dir):
    srv = start_server(model=str(tiny_model_dir), max_concurrent_requests=2, request_timeout_s=5)
    try:
        head = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        holders = [
            threading.Thread(target=raw_request, args=(srv.port, head, [b"{"], 2.0))
            for _ in range(2)
        ]
        for t in holders:
            t.start()
        time.sleep(0.5)
        res = httpx.post(srv.url + "/v1/embeddings", json={"input": "x"})
        assert res.status_code == 429 and res.headers["retry-after"] == "1", res.text
        assert httpx.get(srv.url + "/health/ready").status_code == 200  # not a /v1 route
        for t in holders:
            t.join()
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}).status_code == 200
    finally:
        srv.stop()


def test_request_timeout_covers_decode_and_compute(tiny_model_dir, monkeypatch):
    srv = start_server(model=str(tiny_model_dir), request_timeout_s=1.0)
    try:
        rt = srv.runtime
        slow_pixels = rt._pixels

        def slow(ref, name):
            time.sleep(2.0)
            return slow_pixels(ref, name)

        monkeypatch.setattr(rt, "_pixels", slow)
        start = time.monotonic()
        res = httpx.post(
            srv.url + "/v1/embeddings", json={"input": [data_uri(png_bytes())]}, timeout=30
        )
        assert res.status_code == 429 and res.json()["error"]["code"] == "timeout", res.text
        assert res.headers["retry-after"]
        assert time.monotonic() - start < 1.8
    finally:
        srv.stop()
