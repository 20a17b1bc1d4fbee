"""Dynamic batching, the bounded queue, timeouts, graceful shutdown, API keys and CORS."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import start_server


def metric(url: str, name: str, **labels) -> float:
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_concurrent_requests_share_forward_passes(server):
    url = server.url
    batches0 = metric(url, "biomedclip_batches_total", modality="text")
    rows0 = metric(url, "biomedclip_batch_rows_total", modality="text")
    n = 16
    barrier = threading.Barrier(n)

    def one(i: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as c:
            barrier.wait()
            return c.post("/v1/embeddings", json={"input": f"chest x ray {i}"}).status_code

    # hold the model so that every request is queued before the first pass runs
    text = server.runtime.text
    submitted = text.submitted
    with ThreadPoolExecutor(n) as pool:
        with server.runtime.compute_lock:
            futures = [pool.submit(one, i) for i in range(n)]
            wait_for(lambda: text.submitted - submitted == n)
        assert [f.result() for f in futures] == [200] * n
    rows = metric(url, "biomedclip_batch_rows_total", modality="text") - rows0
    batches = metric(url, "biomedclip_batches_total", modality="text") - batches0
    assert rows == n
    assert batches <= 2, f"{n} requests took {batches} forward passes"
    assert metric(url, "biomedclip_batch_size_count", modality="text") >= batches


def test_queue_full_answers_429_with_retry_after_then_recovers(tiny_model_dir):
    srv = start_server(
        model=str(tiny_model_dir),
        max_queue=4,
        max_inputs=4,
        max_batch_size=2,
        max_wait_ms=0,
        request_timeout_s=2.0,
    )
    try:
        rt = srv.runtime
        with ThreadPoolExecutor(2) as pool:
            with rt.compute_lock:
                first = pool.submit(
                    httpx.post,
                    srv.url + "/v1/embeddings",
                    json={"input": ["a", "b", "c", "d"]},
                    timeout=30,
                )
                # the worker took 2 rows and waits for the model; 2 rows stay queued
                wait_for(lambda: rt.text.depth == 2)
                full = httpx.post(srv.url + "/v1/embeddings", json={"input": ["e", "f", "g"]})
                assert full.status_code == 429, full.text
                assert full.json()["error"]["code"] == "queue_full"
                assert int(full.headers["retry-after"]) >= 1
                assert metric(srv.url, "biomedclip_queue_depth", modality="text") == 2
            assert first.result().status_code == 200
            # a request that waits longer than its timeout gets 429 (and is dropped)
            with rt.compute_lock:
                slow = httpx.post(srv.url + "/v1/embeddings", json={"input": "late"}, timeout=30)
            assert slow.status_code == 429 and slow.json()["error"]["code"] == "timeout"
            assert slow.headers["retry-after"]
        assert metric(srv.url, "biomedclip_rejected_total", reason="queue_full") == 1
        assert metric(srv.url, "biomedclip_rejected_total", reason="timeout") == 1
        ok = httpx.post(srv.url + "/v1/embeddings", json={"input": ["h", "i"]})
        assert ok.status_code == 200
    finally:
        srv.stop()


def test_graceful_shutdown_finishes_in_flight_requests(tiny_model_dir):
    srv = start_server(model=str(tiny_model_dir))
    rt = srv.runtime
    with ThreadPoolExecutor(1) as pool:
        with rt.compute_lock:
            inflight = pool.submit(
                httpx.post, srv.url + "/v1/embeddings", json={"input": "x"}, timeout=30
            )
            wait_for(lambda: rt.text.depth == 0 and inflight.running())
            time.sleep(0.2)
            srv.server.should_exit = True
            time.sleep(0.3)
        assert inflight.result().status_code == 200
    srv.thread.join(30)
    assert not srv.thread.is_alive()
    assert rt.text._thread.is_alive() is False  # batchers drained and stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/health/live", timeout=2)
    srv.sock.close()


def test_api_key_and_cors(tiny_model_dir, monkeypatch):
    srv = start_server(
        model=str(tiny_model_dir), api_key="s3cret", cors_origins=["http://lab.example"]
    )
    try:
        u = srv.url
        res = httpx.get(u + "/v1/models")
        assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
        assert res.json()["error"]["code"] == "invalid_api_key"
        bad = {"Authorization": "Bearer nope"}
        assert httpx.get(u + "/v1/models", headers=bad).status_code == 401
        assert httpx.post(u + "/v1/embeddings", json={"input": "x"}).status_code == 401
        assert httpx.get(u + "/metrics").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.get(u + "/v1/models", headers=good).status_code == 200
        # only the Authorization header: no X-API-Key, no ?api_key= (URLs end up in logs)
        assert httpx.get(u + "/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 401
        assert (
            httpx.post(u + "/v1/embeddings?api_key=s3cret", json={"input": "x"}).status_code == 401
        )
        assert httpx.get(u + "/metrics", headers=good).status_code == 200
        for open_path in ("/health/live", "/health/ready", "/", "/openapi.json"):
            assert httpx.get(u + open_path).status_code == 200, open_path
        pre = httpx.options(
            u + "/v1/embeddings",
            headers={
                "Origin": "http://lab.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.headers["access-control-allow-origin"] == "http://lab.example"
        other = httpx.get(u + "/health/live", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        srv.stop()


def test_cli_serve_starts_and_stops_on_sigterm(tiny_model_dir, tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    from tests.train.conftest import cli_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env() | {"BIOMEDCLIP_API_KEY": "k"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "biomedclip.cli.main",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--port",
            str(port),
            "--max-wait-ms",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), timeout=240)
        res = httpx.post(
            url + "/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer k"}
        )
        assert res.status_code == 200
        rid = res.headers["x-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    # uvicorn re-raises the signal once shut down cleanly (exit by SIGTERM), older ones exit 0
    assert proc.returncode in (0, -signal.SIGTERM), out[-2000:]
    assert "Application shutdown complete" in out
    assert f"rid={rid} POST /v1/embeddings -> 200" in out
    assert "batchers drained" in out


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_cli_serve_exits_non_zero_when_the_model_fails_to_load(tmp_path):
    import subprocess
    import sys

    from tests.train.conftest import cli_env

    cmd = [sys.executable, "-m", "biomedclip.cli.main", "serve", "--port", "0"]
    cmd += ["--model", str(tmp_path / "missing")]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "model load failed" in proc.stderr
