"""``biomedclip export`` on the tiny model: JSON output, probes, refusals with clear errors."""

from __future__ import annotations

import json

import pytest

from biomedclip.cli.main import main

pytest.importorskip("onnxruntime")


def test_export_onnx_json_probe_texts_and_refusals(tiny_model_dir, tmp_path, capsys):
    probes = tmp_path / "prompts.txt"
    probes.write_text("red circle\n\nblue square on the left\nchest x ray\n")
    out = tmp_path / "onnx"
    args = ["export", "onnx", str(tiny_model_dir), str(out), "--variants", "fp32"]
    assert main([*args, "--probe-texts", str(probes), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "onnx" and report["directory"] == str(out)
    assert report["parity"]["fp32"]["texts"] == 3 and report["parity"]["fp32"]["images"] == 4
    assert report["parity"]["fp32"]["text"]["max_abs_diff"] <= 1e-5
    assert report["source"]["sha256"] and "image.onnx" in report["files"]
    assert not (out / "image.int8.onnx").exists()
    assert json.loads((out / "export_manifest.json").read_text())["files"] == report["files"]

    assert main(args) == 2  # OUT is not empty
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert "parity of the onnx export" in capsys.readouterr().out

    assert main(["export", "open_clip", str(tiny_model_dir), str(tmp_path / "oc")]) == 2
    assert "custom timm arguments" in capsys.readouterr().err
    assert not (tmp_path / "oc").exists()  # nothing left behind by a refused export
    assert main([*args[:3], str(tmp_path / "v"), "--variants", "fp16"]) == 2
    assert "fp16" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if "_partial_" in p.name]


def test_help_and_unknown_format(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    assert "open_clip" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["export", "tflite", "a", "b"])
    assert e.value.code == 2
