"""Issue 24 through the service: headers whose declared structure was not counted (a planar TIFF,
a NIfTI spacing that multiplies the slice after the voxel check, a slide level stored as one huge
tile), a format-spec template, and the event loop staying free while a request works.

The image cases are refused by the decode budget (``imaging/budget.py``) before anything large
is allocated.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from benchmarks import _bombs as bombs

from biomedclip.serve import runtime as runtime_module
from tests.serve.conftest import data_uri, png_bytes, start_server
from tests.serve.test_errors import error_of
from tests.serve.test_hostile import RSS_BOUND_MIB, Watch

CAP = 2**20  # "1 Mpx": the big-tile slide's 1024^2 level is exactly at the cap


@pytest.fixture(scope="module")
def guarded(tiny_model_dir):
    srv = start_server(
        model=str(tiny_model_dir), max_pixels=CAP, max_text_chars=400, request_timeout_s=20
    )
    yield srv
    srv.stop()


@pytest.fixture
def http(guarded):
    with httpx.Client(base_url=guarded.url, timeout=60) as c:
        yield c


def test_format_spec_template_is_a_422_naming_it_and_builds_nothing(http, guarded):
    img = data_uri(png_bytes())
    attack = bombs.template_format_spec()
    for templates in (attack, [attack], ["{}", attack]):
        body = {"image": img, "labels": ["a", "b"], "templates": templates}
        msg = error_of(http.post("/v1/classify", json=body), 422)
        assert repr(attack) in msg and "only a bare '{}'" in msg
    # literal braces are fine: the prompt is "{} a", as str.format would build it
    body = {"image": img, "labels": ["a", "b"], "templates": "{{}} {}"}
    assert http.post("/v1/classify", json=body).status_code == 200
    rt = guarded.runtime
    ref = rt.encoder.classifier(["a", "b"], "{{}} {}").float()
    weights = rt._classifiers[(("a", "b"), ("{{}} {}",))]
    assert float((weights * ref).sum(-1).min()) >= 0.9999


def test_prompt_length_is_refused_from_sizes(http):
    body = {"image": data_uri(png_bytes()), "labels": ["x" * 250], "templates": "{} " + "y" * 200}
    msg = error_of(http.post("/v1/classify", json=body), 413)
    assert "the prompt would have 451 characters, the limit is 400" in msg


def test_a_slow_request_does_not_hold_up_other_clients(server, monkeypatch):
    """While one classify request's prompt building is held in its worker thread, other requests
    (texts, images, another classify) are answered; then the held one completes too."""
    entered, release = threading.Event(), threading.Event()
    build = runtime_module.build_prompts

    def held(labels, templates, max_chars):
        if "held label" in labels:
            entered.set()
            assert release.wait(60)
        return build(labels, templates, max_chars)

    monkeypatch.setattr(runtime_module, "build_prompts", held)
    img = data_uri(png_bytes())
    answers: dict[str, httpx.Response] = {}

    def slow():
        body = {"image": img, "labels": ["held label", "b"], "templates": "held {}"}
        answers["slow"] = httpx.post(server.url + "/v1/classify", json=body, timeout=60)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert entered.wait(30), "the held request never reached prompt building"
        with httpx.Client(base_url=server.url, timeout=20) as c:
            assert c.post("/v1/embeddings", json={"input": ["chest x-ray", img]}).is_success
            body = {"image": img, "labels": ["x", "y"], "templates": "other {}"}
            assert c.post("/v1/classify", json=body).is_success
            assert c.get("/health/ready").status_code == 200
        assert thread.is_alive() and "slow" not in answers  # answered while it was held
    finally:
        release.set()
        thread.join(60)
    assert answers["slow"].status_code == 200, answers["slow"].text


def _planar() -> bytes:  # 3 x height <= CAP < width x height
    return bombs.planar_tiff(width=2000, height=1000)


def _nifti() -> bytes:  # exactly CAP voxels, spacing (1, 99, 1)
    return bombs.nifti_spacing(CAP)


def _slide() -> bytes:  # the 1024^2 level (at CAP) is one 8192^2 tile
    return bombs.big_tile_slide(level=1024, tile=8192, base=2048)


@pytest.mark.parametrize("build", [_planar, _nifti, _slide], ids=["planar", "nifti", "slide"])
def test_declared_structure_is_counted(guarded, monkeypatch, build):
    from biomedclip.imaging import wsi

    monkeypatch.setattr(wsi, "openslide_module", lambda: None)  # the serve extra has no OpenSlide
    uri = data_uri(build(), "application/octet-stream")
    with httpx.Client(base_url=guarded.url, timeout=60) as c:
        c.post("/v1/embeddings", json={"input": [data_uri(png_bytes())]})  # warm
        with Watch(guarded.url) as watch:
            res = c.post("/v1/embeddings", json={"input": [uri]})
        assert c.get("/health/ready").status_code == 200
    assert 400 <= res.status_code < 500, res.text[:300]
    assert set(watch.ready_codes) <= {200}  # a fast refusal may end before the first poll
    assert watch.growth_mib < RSS_BOUND_MIB, f"RSS grew {watch.growth_mib:.0f} MiB"
