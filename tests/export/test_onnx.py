"""``export onnx`` at the full architecture, and the torch-free runner in a process without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tests.export.conftest import assert_equal_embeddings, export_once, unit

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.slow

# A process in which `import torch` fails, running the runner on the example images and prompts.
TORCH_FREE = """
import importlib.abc, json, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from biomedclip.onnx import OnnxBiomedCLIP
export, out = sys.argv[1], sys.argv[2]
images = json.loads(open(out + "/images.json").read())
texts = json.loads(open(out + "/texts.json").read())
for variant in ("fp32", "int8"):
    m = OnnxBiomedCLIP(export, variant, threads=2)
    img, txt = m.encode_images(images + ["/no/such/image.png"]), m.encode_texts(texts + ["  "])
    assert [i for i, _ in img.errors] == [len(images)] and [i for i, _ in txt.errors] == [len(texts)]
    np.save(f"{out}/{variant}_images.npy", img.embeddings)
    np.save(f"{out}/{variant}_texts.npy", txt.embeddings)
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
print("torch-free ok")
"""


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, full_model):
    return export_once(tmp_path_factory, "onnx", full_model)


@pytest.fixture(scope="module")
def torch_free_run(onnx_export, example_images, prompts, tmp_path_factory):
    """Embeddings from the runner in a subprocess where importing torch raises."""
    out = tmp_path_factory.mktemp("torch_free")
    (out / "images.json").write_text(json.dumps([str(p) for p in example_images]))
    (out / "texts.json").write_text(json.dumps(prompts))
    script = out / "run.py"
    script.write_text(textwrap.dedent(TORCH_FREE))
    proc = subprocess.run(
        [sys.executable, str(script), str(onnx_export.directory), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch-free ok" in proc.stdout
    return {f.stem: np.load(f) for f in out.glob("*.npy")}


def test_files_and_manifest(onnx_export):
    d = onnx_export.directory
    names = {p.name for p in d.iterdir()}
    assert {"image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx"} <= names
    assert {"biomedclip_onnx.json", "tokenizer.json", "export_manifest.json"} <= names
    sizes = {n: (d / n).stat().st_size for n in ("image.onnx", "image.int8.onnx")}
    assert sizes["image.int8.onnx"] < sizes["image.onnx"] / 2.5  # really quantised
    parity = onnx_export.manifest["parity"]
    assert parity["fp32"]["image"]["max_abs_diff"] <= 1e-5
    assert parity["fp32"]["text"]["max_abs_diff"] <= 1e-5
    assert parity["int8"]["image"]["min_cosine"] >= 0.999
    assert onnx_export.manifest["source"]["sha256"] is None  # an in-memory model has no file


def test_fp32_equals_and_int8_is_close_without_torch(torch_free_run, reference):
    assert_equal_embeddings(reference["images"], torch_free_run["fp32_images"])
    assert_equal_embeddings(reference["texts"], torch_free_run["fp32_texts"])
    for kind in ("images", "texts"):
        cos = (unit(reference[kind]) * unit(torch_free_run[f"int8_{kind}"])).sum(-1)
        assert cos.min() >= 0.999, (kind, cos.min())
        assert not np.allclose(torch_free_run[f"int8_{kind}"], torch_free_run[f"fp32_{kind}"])


def test_text_graph_has_a_dynamic_sequence_length(onnx_export, full_model):
    import onnx
    import torch

    from biomedclip.onnx.runner import make_session

    graph = onnx.load(str(onnx_export.directory / "text.onnx"), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]
    session = make_session(onnx_export.directory / "text.onnx", threads=2)
    for length in (3, 9, 40):  # none of them the traced example's length (5)
        ids = torch.randint(1000, 20000, (2, length))
        ids[:, 0], ids[:, -1] = 2, 3
        mask = torch.ones_like(ids)
        mask[1, length // 2 :] = 0
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.inference_mode():
            want = full_model.encode_text(ids, mask).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_runner_classify(onnx_export, example_images):
    from biomedclip.onnx import OnnxBiomedCLIP

    runner = OnnxBiomedCLIP(onnx_export.directory, "fp32", threads=2)
    probs, enc = runner.classify(example_images[:2], ["chest X-ray", "brain MRI", "bone X-ray"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert enc.index.tolist() == [0, 1]
