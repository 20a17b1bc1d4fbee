"""`export openvino`: the fp32 IR at the full architecture (random weights, built once for
tests/export/) and the NNCF int8 IR on the tiny model, verified through the torch-free runner on
real LC25000 images.

int8 is exported from the tiny model: NNCF on both full-size towers costs about a minute of the
suite's two cores, and its accuracy at full size is measured by benchmarks/image_speed.py,
text_speed.py and zeroshot_agreement.py (the same ``quantize`` recipe, through the engine). int8 is
calibrated on four real LC25000 images and checked on eight others. The engine's own OpenVINO path
shares the conversion code (``convert`` / ``quantize``); see tests/embedding/test_openvino_backend.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.conftest import shared_path
from tests.export.conftest import export_once, unit

pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytestmark = pytest.mark.slow

# int8 on *random* weights (no trained structure; most activations near a tie) measured 0.996 on
# an AVX2-only EPYC over LC25000 images; --backend auto keeps its own 0.999 bar and refuses int8
# where it misses it. An export is refused below the package's int8 bar (0.99).
INT8_MIN = 0.99


def _lung(offset: int, n: int):
    paths = sorted(shared_path("lc25000_lung").rglob("*.jpeg"))
    return paths[offset :: max(1, len(paths) // n)][:n]


@pytest.fixture(scope="session")
def ov_export(full_model, prompts, tmp_path_factory):
    return export_once(
        tmp_path_factory, "openvino", full_model, probe_images=_lung(1, 4),
        probe_texts=prompts[:8], openvino_variants=("fp32",),
    )  # fmt: skip


@pytest.fixture(scope="session")
def ov_int8_export(tiny_model_dir, prompts, tmp_path_factory):
    return export_once(
        tmp_path_factory, "openvino", str(tiny_model_dir), probe_images=_lung(1, 4),
        probe_texts=prompts[:8], openvino_variants=("fp32", "int8"),
    )  # fmt: skip


@pytest.fixture(scope="session")
def lung_images():
    return _lung(0, 8)


def test_export_files_manifest_and_parity(ov_export):
    d, m = ov_export.directory, ov_export.manifest
    for name in ("image.xml", "image.bin", "text.xml", "text.bin"):
        assert (d / name).is_file() and name in m["files"]
    assert not (d / "image.int8.xml").exists()
    assert set(m["parity"]) == {"fp32"}
    assert m["parity"]["fp32"]["image"]["max_abs_diff"] <= 1e-4
    assert m["parity"]["fp32"]["text"]["max_abs_diff"] <= 1e-4
    config = json.loads((d / "biomedclip_onnx.json").read_text())
    assert config["variants"] == ["openvino-fp32"]


def test_int8_export_files_manifest_and_parity(ov_int8_export):
    d, m = ov_int8_export.directory, ov_int8_export.manifest
    for name in ("image.xml", "text.xml", "image.int8.xml", "image.int8.bin", "text.int8.bin"):
        assert (d / name).is_file() and name in m["files"]
    assert set(m["parity"]) == {"fp32", "int8"}
    assert m["parity"]["int8"]["image"]["min_cosine"] >= INT8_MIN
    assert m["parity"]["int8"]["text"]["min_cosine"] >= INT8_MIN
    assert m["options"]["calibration"] == "4 probe images"
    config = json.loads((d / "biomedclip_onnx.json").read_text())
    assert config["variants"] == ["openvino-fp32", "openvino-int8"]


def _runner_agrees(directory, variant, bar, model, images, texts):
    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.onnx import OnnxBiomedCLIP

    enc = Encoder(model, settings=EncoderSettings(num_workers=0))
    ref_i = enc.encode_images(images).embeddings
    ref_t = enc.encode_texts(texts).embeddings
    runner = OnnxBiomedCLIP(directory, variant)
    img = runner.encode_images(images)
    txt = runner.encode_texts(texts)
    assert not img.errors and not txt.errors
    cos_i = (unit(img.embeddings) * unit(ref_i)).sum(1).min()
    cos_t = (unit(txt.embeddings) * unit(ref_t)).sum(1).min()
    assert cos_i >= bar and cos_t >= bar, (variant, cos_i, cos_t)
    probs, _ = runner.classify(images[:2], ["lung adenocarcinoma", "benign lung"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_the_torch_free_runner_matches_the_engine_on_real_images(
    ov_export, full_model, lung_images, prompts
):
    _runner_agrees(
        ov_export.directory, "openvino-fp32", 0.9999, full_model, lung_images, prompts[:16]
    )


def test_the_int8_runner_is_close_to_the_engine_on_real_images(
    ov_int8_export, tiny_model_dir, lung_images, prompts
):
    import biomedclip

    tiny = biomedclip.load(str(tiny_model_dir))[0]
    _runner_agrees(
        ov_int8_export.directory, "openvino-int8", INT8_MIN, tiny, lung_images, prompts[:16]
    )
