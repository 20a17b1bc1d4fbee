"""Clients of the live service: the OpenAI SDK, biomedclip.client.Client, and a schemathesis run
over /openapi.json that must find no 5xx."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.serve.conftest import png_bytes


def test_openai_sdk_embeddings(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    texts = ["chest x ray", "brain mri scan"]
    res = client.embeddings.create(model="biomedclip", input=texts)  # SDK default: base64
    got = np.array([d.embedding for d in res.data], np.float32)
    want = server.runtime.encoder.encode_texts(texts).embeddings
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert res.usage.prompt_tokens > 0 and res.model == server.runtime.settings.model
    floats = client.embeddings.create(
        model="biomedclip", input="chest x ray", encoding_format="float"
    )
    np.testing.assert_allclose(floats.data[0].embedding, want[0], atol=1e-6)
    with pytest.raises(openai.BadRequestError, match="dimensions=8"):
        client.embeddings.create(model="biomedclip", input="x", dimensions=8)


def test_python_client_methods(server, example_image):
    from biomedclip.client import APIError, Client

    with Client(server.url) as c:
        assert c.ready()
        assert c.models()[0]["dimensions"] == 32
        texts = c.embed_texts(["chest x ray", "brain mri"])
        np.testing.assert_allclose(
            texts,
            server.runtime.encoder.encode_texts(["chest x ray", "brain mri"]).embeddings,
            atol=1e-6,
        )
        images = c.embed_images([example_image, png_bytes()])
        assert images.shape == (2, 32)
        probs = c.classify(example_image, ["chest x ray", "brain mri"])
        assert list(probs) == sorted(probs, key=probs.get, reverse=True)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        hits = c.search(image=example_image, top_k=2, modality="image")
        assert hits[0]["id"] == "chest_X-ray"
        assert c.search(embedding=texts[0], top_k=1)[0]["rank"] == 1
        assert c.search(item=hits[0]["row"], top_k=1)[0]["row"] == hits[0]["row"]
        ex = c.explain(example_image, "chest x ray", method="patch-similarity")
        assert ex["grid"].shape == (4, 4) and ex["png_bytes"][:4] == b"\x89PNG"
        assert "biomedclip_requests_total" in c.metrics()
        with pytest.raises(APIError) as err:
            c.classify(example_image, [])
        assert err.value.status == 400 and "labels" in err.value.message


def test_schemathesis_finds_no_server_errors(server, tmp_path):
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed")
    report = tmp_path / "report.json"
    cmd = [
        exe,
        "run",
        server.url + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "fuzzing",
        "--max-examples",
        "10",
        "--workers",
        "2",
        "--seed",
        "12",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    print(out[-3000:])
    assert proc.returncode == 0, out[-4000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert counts, "schemathesis generated no test cases"
    generated, passed = map(int, counts.groups())
    assert generated == passed >= 40, out[-2000:]
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    assert events, "schemathesis reported nothing"


def test_schemathesis_stateful_finds_no_server_errors(server, tmp_path):
    """Stateful phase: sequences that follow the OpenAPI links (search -> search by a hit's
    image, search -> the hit's thumbnail) and every other operation in between."""
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed")
    cmd = [exe, "run", server.url + "/openapi.json", "--checks", "not_a_server_error"]
    cmd += ["--phases", "stateful", "--max-examples", "20", "--seed", "7", "--no-color"]
    cmd += ["--generation-database", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    print(out[-3000:])
    assert proc.returncode == 0, out[-4000:]
    assert "Stateful" in out and "links" in out.lower(), out[-2000:]
