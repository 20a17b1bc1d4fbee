"""The OpenVINO backend and ``--backend auto`` on the tiny model: parity, the on-disk cache (a second
start converts nothing; changed weights convert anew), refusals (bf16 without native bf16, a missing
extra, int8 without calibration images) and auto's choice under faked CPU flags and measurements.
The full-size parity on real images is in tests/export/test_openvino.py."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from biomedclip.embedding import (
    EmbedConfig,
    backend_auto,
    cpu_features,
    embed_images,
    embed_to_dataset,
    read_manifest,
    sources,
)
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.errors import ConfigError

ov_backend = pytest.importorskip("biomedclip.embedding.openvino_backend")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

AVX2 = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"})


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: the tiny model's towers are converted once."""
    return tmp_path_factory.mktemp("ov_cache")


@pytest.fixture()
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("BIOMEDCLIP_CACHE", str(shared_cache))
    monkeypatch.delenv("BIOMEDCLIP_CALIBRATION", raising=False)
    return shared_cache


def _images(image_dir):
    paths = sorted(p for p in image_dir.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg"))
    return [p for p in paths if p.name != "broken.jpg"]


def test_fp32_and_int8_match_torch_and_a_second_start_converts_nothing(tiny, image_dir, cache):
    model, pre, tok = tiny
    paths = _images(image_dir)
    cfg = EmbedConfig(progress=False, num_workers=0)
    ref = embed_images(model, pre, paths, cfg)
    texts = ["chest x ray", "a photo of a large red circle on the left of the image"]
    ref_t = Encoder(model, pre, tok).encode_texts(texts).embeddings
    ov_backend.CONVERSIONS.clear()
    for precision in ("fp32", "int8"):
        s = EncoderSettings(backend="openvino", precision=precision, num_workers=0)
        fast = embed_images(model, pre, paths, EmbedConfig(**vars(s), progress=False))
        assert fast.ids == ref.ids and len(fast.ids) == 5
        assert (fast.embeddings * ref.embeddings).sum(1).min() > 0.999
        enc = Encoder(model, pre, tok, EncoderSettings(backend="openvino", precision=precision))
        t = enc.encode_texts(texts).embeddings  # dynamic length: two different lengths
        assert (t * ref_t).sum(1).min() > 0.999
        done = ["image-fp32", "text-fp32"]
        done += ["image-int8", "text-int8"] if precision == "int8" else []
        assert done == ov_backend.CONVERSIONS  # once each, though two encoders were built
        prov = enc.provenance()
        assert prov["backend"] == "openvino" and prov["precision"] == precision
        if precision == "int8":  # calibrated on the job's own first images (embed_images)
            assert "the job's first" in prov["openvino"]["calibration"]
    folder = ov_backend.model_cache_dir(model)
    names = sorted(p.name for p in folder.glob("*.xml"))
    assert names == sorted(
        ["image-fp32.xml", "text-fp32.xml", ov_backend.ir_name("image", "int8"),
         ov_backend.ir_name("text", "int8")]
    )  # fmt: skip
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["conversion_seconds"]["int8"]["image"] >= 0 and "calibration" in meta
    # a second start (a fresh process: the in-memory reuse cleared) reads the cache
    ov_backend._TOWERS.clear()
    ov_backend.CONVERSIONS.clear()
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*.xml")}
    Encoder(model, pre, tok, EncoderSettings(backend="openvino", precision="int8"))
    assert ov_backend.CONVERSIONS == []
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.xml")} == mtimes


def test_the_cache_key_follows_the_weight_file(tiny, tiny_model_dir, tmp_path, cache):
    """The same weights saved and loaded again hit the cache; a changed weight file does not."""
    import biomedclip

    model, pre, tok = tiny
    folder = ov_backend.model_cache_dir(model)
    same = biomedclip.load(str(tiny_model_dir))[0]
    assert ov_backend.model_cache_dir(same) == folder
    with torch.no_grad():
        same.visual.head.proj.weight.mul_(1.5)
    same.save_pretrained(tmp_path / "changed")
    changed = biomedclip.load(str(tmp_path / "changed"))[0]
    new = ov_backend.model_cache_dir(changed)
    assert new != folder and new.name.endswith("-ov" + ov_backend.openvino_version())
    assert not new.exists()  # nothing cached for these weights: the first start converts


def test_bf16_is_refused_without_native_bf16_naming_the_flags(tiny, monkeypatch, cache):
    model, pre, tok = tiny
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX2)
    with pytest.raises(ConfigError, match=r"amx_bf16=no .*avx512_bf16=no .*avx2=yes"):
        Encoder(model, pre, tok, EncoderSettings(backend="openvino", precision="bf16"))
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AMX)
    ov_backend.check_precision("bf16")  # accepted where native


@pytest.mark.skipif(not cpu_features.native_bf16(), reason="this CPU has no native bf16")
def test_bf16_runs_where_native(tiny, image_dir, cache):
    model, pre, _ = tiny
    paths = _images(image_dir)
    ref = embed_images(model, pre, paths, EmbedConfig(progress=False, num_workers=0))
    cfg = EmbedConfig(progress=False, num_workers=0, backend="openvino", precision="bf16")
    fast = embed_images(model, pre, paths, cfg)
    assert (fast.embeddings * ref.embeddings).sum(1).min() > 0.999


def test_a_missing_extra_names_it(tiny, monkeypatch, cache):
    model, pre, tok = tiny
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(ConfigError, match=r"biomedclip\[cpu-fast\]"):
        Encoder(model, pre, tok, EncoderSettings(backend="openvino"))
    assert "cpu-fast" in backend_auto.unavailable("openvino", "int8")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ConfigError, match=r"NNCF.*cpu-fast"):
        ov_backend.require_nncf()


def test_int8_and_auto_without_calibration_images_say_how(tiny, tmp_path, monkeypatch, cache):
    monkeypatch.setenv(
        "BIOMEDCLIP_CACHE", str(tmp_path)
    )  # nothing cached: refused before converting
    model, pre, tok = tiny
    with pytest.raises(ConfigError, match="--calibration"):
        Encoder(model, pre, tok, EncoderSettings(backend="openvino", precision="int8"))
    with pytest.raises(ConfigError, match="--calibration"):
        Encoder(model, pre, tok, EncoderSettings(backend="auto"))
    with pytest.raises(ConfigError, match="int8"):
        EncoderSettings(precision="int8")  # int8 is OpenVINO's


def _fake_measure(monkeypatch, figures):
    """Replace building and measuring: each candidate gets ``figures[(backend, precision)]``."""
    calls = []

    def build(model, pre, tok, settings):
        calls.append((settings.backend, settings.precision))
        return settings

    def measure(encoders, pixels, tokens, reference):
        out = {}
        for name, enc in encoders.items():
            s = getattr(enc, "settings", enc)  # torch fp32 is the real reference encoder
            speed, cos, text_speed, text_cos = figures[(s.backend, s.precision)]
            out[name] = {"img_per_s": speed, "min_cosine": min(cos, text_cos)}
            out[name] |= {"texts_per_s": text_speed, "min_cosine_text": text_cos}
        return out

    monkeypatch.setattr(backend_auto, "build_candidate", build)
    monkeypatch.setattr(backend_auto, "measure_candidates", measure)
    return calls


FIGURES = {  # (img/s, image min cosine, texts/s, text min cosine): the fastest misses the bar
    ("openvino", "int8"): (40.0, 0.9985, 500.0, 0.9985),
    ("openvino", "bf16"): (28.0, 0.9999, 300.0, 0.9999),
    ("torch", "bf16"): (25.0, 0.99997, 250.0, 0.99997),
    ("onnx-int8", "fp32"): (17.0, 0.9997, 100.0, 1.0),
    ("openvino", "fp32"): (8.0, 1.0, 400.0, 1.0),
    ("torch", "fp32"): (7.0, 1.0, 100.0, 1.0),
}


def test_auto_chooses_the_fastest_within_the_cosine_bar_and_caches_it(
    tiny, image_dir, tmp_path, monkeypatch, cache
):
    monkeypatch.setenv("BIOMEDCLIP_CACHE", str(tmp_path))  # auto's decisions of its own
    model, pre, tok = tiny
    calls = _fake_measure(monkeypatch, FIGURES)
    cal = str(image_dir)
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AMX)
    d = backend_auto.choose(model, pre, tok, EncoderSettings(), _cal(cal))
    assert [c["name"] for c in d["candidates"]] == [
        "openvino-int8", "openvino-bf16", "torch-bf16", "onnx-int8", "openvino-fp32", "torch-fp32"
    ]  # fmt: skip
    assert d["choice"] == "openvino-bf16" and d["min_cosine"] == 0.9999 and not d["cached"]
    assert d["text"]["name"] == "openvino-fp32"  # texts: the fastest within the bar
    assert d["cpu"]["kind"] == "AMX" and d["cpu"]["flags"]["amx_bf16"] is True
    n = len(calls)
    again = backend_auto.choose(model, pre, tok, EncoderSettings(), None)  # no images needed
    assert again["cached"] and again["choice"] == "openvino-bf16" and len(calls) == n
    # another CPU: no native bf16, so only int8 paths and fp32 are candidates; measured anew
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX2)
    d = backend_auto.choose(model, pre, tok, EncoderSettings(), _cal(cal))
    names = ["openvino-int8", "onnx-int8", "openvino-fp32", "torch-fp32"]
    assert [c["name"] for c in d["candidates"]] == names
    assert d["choice"] == "onnx-int8" and len(calls) == n + 3  # fp32 is the reference itself
    # nothing within the bar: fp32
    assert backend_auto.pick(
        [{"name": "onnx-int8", "img_per_s": 17.0, "min_cosine": 0.99}]
    )["name"] == "torch-fp32"  # fmt: skip


def _cal(directory):
    from biomedclip.embedding.calibration import resolve_calibration

    return resolve_calibration(directory)


def test_auto_runs_its_choice_and_the_manifest_records_it(
    tiny, image_dir, tmp_path, monkeypatch, cache
):
    model, pre, tok = tiny
    _fake_measure(monkeypatch, FIGURES)
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: AVX2)
    out = tmp_path / "emb"
    cfg = EmbedConfig(batch_size=2, num_workers=0, progress=False, backend="auto")
    embed_to_dataset(model, pre, tok, sources.image_folder(image_dir), out, cfg, "tiny")
    m = read_manifest(out)
    assert m["precision"] == "auto:onnx-int8+fp32,text=openvino+fp32"
    b = m["backend"]
    assert b["chosen_by"] == "auto" and b["backend"] == "onnx-int8" and b["min_cosine"] == 0.9997
    assert b["cpu"]["kind"] == "AVX2" and b["cpu"]["flags"]["avx2"] is True
    assert "the job's first" in b["auto"]["calibration"]


def test_cli_backend_openvino_and_auto(tiny_model_dir, image_dir, tmp_path, capsys, cache):
    from tests.conftest import run_main

    out = tmp_path / "emb"
    code, _, err = run_main(
        capsys, "embed", str(image_dir), "--out", str(out), "--model", str(tiny_model_dir),
        "--backend", "openvino", "--precision", "int8", "--no-progress", "--workers", "0",
    )  # fmt: skip
    assert code == 1, err  # broken.jpg is reported; the others are embedded
    m = read_manifest(out)
    assert m["precision"] == "openvino+int8" and m["count"] == 5
    assert m["backend"]["openvino"]["calibration"].startswith("the job's first")
    code, stdout, err = run_main(
        capsys, "classify", *map(str, _images(image_dir)[:2]), "--labels", "red, blue",
        "--model", str(tiny_model_dir), "--backend", "openvino", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["backend"]["backend"] == "openvino"


def test_eval_results_json_records_what_ran(tmp_path):
    import argparse

    from biomedclip.cli import eval as cli_eval
    from biomedclip.eval.results import EvalResult

    r = EvalResult(dataset="d", task="zeroshot_classification", model="m", metrics={"acc1": 1.0})
    prov = {"backend": "openvino", "precision": "int8", "label": "auto:openvino+int8"}
    cli_eval._PROVENANCE["m"] = prov
    try:
        cli_eval.finish(argparse.Namespace(out=str(tmp_path), json=False), [r])
    finally:
        cli_eval._PROVENANCE.pop("m")
    record = json.loads((tmp_path / "results.json").read_text())[0]
    assert record["settings"]["backend"] == prov
