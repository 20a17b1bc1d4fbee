"""``--engine ray --replicas 2``: the same API on Ray Serve (2 CPU replicas of the tiny model).

The single-process service's API and error tests run again here against the Ray deployment (in
this module ``server`` is the Ray service, with the in-process runtime as the reference for
expected values); answers equal the single-process service; killing a replica loses no request
that is retried.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from tests.serve import test_api, test_errors
from tests.serve.conftest import data_uri, png_bytes

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_service(tiny_model_dir, tiny_index, example_dir, local_server):
    import socket

    from biomedclip.serve import ServeSettings, ray_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServeSettings(
        model=str(tiny_model_dir),
        index=str(tiny_index),
        max_wait_ms=10,
        allow_files=[str(example_dir)],
        request_timeout_s=20,
    )
    url = ray_app.start(settings, replicas=2, port=port, cpus_per_replica=0.5)
    yield SimpleNamespace(url=url, runtime=local_server.runtime, replicated=True)
    ray_app.stop()


@pytest.fixture(scope="module")
def server(ray_service):
    return ray_service


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# The same API tests as the single-process service (every route; every bad-input test that needs
# no specially configured server), collected again in this module, where they meet the Ray service.
SHARED_ERROR_TESTS = (
    "test_embedding_request_errors",
    "test_bad_images_name_the_input",
    "test_classify_errors",
    "test_search_errors",
    "test_explain_errors",
    "test_protocol_errors",
    "test_unit_vectors_even_for_odd_images",
)
for _name, _test in [
    *((n, f) for n, f in vars(test_api).items() if n.startswith("test_")),
    *((n, getattr(test_errors, n)) for n in SHARED_ERROR_TESTS),
]:
    globals()[_name.replace("test_", "test_ray_", 1)] = _test


def post(url: str, route: str, body: dict) -> dict:
    res = httpx.post(url + route, json=body, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()


def test_ray_replicas_answer_like_the_single_process_service(server, local_server, example_image):
    ray_url, server = server.url, local_server
    assert httpx.get(ray_url + "/health/ready").status_code == 200
    img = data_uri(example_image, "image/jpeg")
    body = {"input": ["chest x-ray", img, "brain mri"]}
    ray_emb = post(ray_url, "/v1/embeddings", body)
    one_emb = post(server.url, "/v1/embeddings", body)
    assert ray_emb["modality"] == one_emb["modality"] == "mixed"
    a = np.array([d["embedding"] for d in ray_emb["data"]])
    b = np.array([d["embedding"] for d in one_emb["data"]])
    assert (a * b).sum(-1).min() >= 0.9999
    cls = {"image": img, "labels": ["chest x-ray", "brain mri", "histology"]}
    ray_p = post(ray_url, "/v1/classify", cls)["probabilities"]
    one_p = post(server.url, "/v1/classify", cls)["probabilities"]
    assert [p["label"] for p in ray_p] == [p["label"] for p in one_p]
    assert np.allclose([p["probability"] for p in ray_p], [p["probability"] for p in one_p], 1e-4)
    ray_h = post(ray_url, "/v1/search", {"text": "chest x-ray", "top_k": 5})["hits"]
    one_h = post(server.url, "/v1/search", {"text": "chest x-ray", "top_k": 5})["hits"]
    assert [h["id"] for h in ray_h] == [h["id"] for h in one_h]
    # limits and errors are the replicas' own: same 4xx
    for body in (
        {"input": [data_uri(b"not an image")]},
        {"input": "x", "t": 1},
        {"input": [data_uri(png_bytes())] * 200},
        {"input": "/etc/x-ray.png"},
    ):
        ray_res = httpx.post(ray_url + "/v1/embeddings", json=body, timeout=60)
        one_res = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert 400 <= ray_res.status_code < 500, ray_res.text
        assert ray_res.status_code == one_res.status_code
        assert ray_res.json()["error"]["code"] == one_res.json()["error"]["code"]
    thumb = httpx.get(ray_url + ray_h[0]["thumbnail"]) if ray_h[0]["thumbnail"] else None
    assert thumb is None or thumb.status_code == 200


def test_killing_a_replica_loses_no_retried_request(server):
    ray_url = server.url
    import ray

    from biomedclip.client import Client

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "BiomedCLIPReplica" in a["name"] and a["namespace"] == "serve"
    ]
    assert len(names) == 2, names
    with Client(ray_url, retries=5, timeout=60) as c:
        ref = c.embed_texts(["pleural effusion"])[0]
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        got = []
        for i in range(12):
            for _attempt in range(5):  # the proxy may answer 500 once for the dead replica
                try:
                    got.append(c.embed_texts(["pleural effusion"])[0])
                    break
                except Exception:  # noqa: BLE001 - retried below
                    time.sleep(1)
            assert len(got) == i + 1, f"request {i} lost"
    assert min(float(v @ ref) for v in got) >= 0.9999
