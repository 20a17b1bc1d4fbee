"""The CLI as a user meets it: classify, info, convert, help, errors."""

from __future__ import annotations

import json

import pytest
import torch

import biomedclip
from biomedclip.cli.main import COMMANDS, main
from tests.conftest import run_main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: biomedclip " + command in capsys.readouterr().out


def test_classify_examples_json(capsys, tiny_model_dir, example_images):
    code, out, _ = run_main(
        capsys,
        "classify",
        *example_images,
        "--labels",
        "chest x ray, brain mri, bone",
        "--model",
        tiny_model_dir,
        "--top-k",
        "2",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["labels"] == ["chest x ray", "brain mri", "bone"]
    assert [r["image"] for r in data["results"]] == [str(p) for p in example_images]
    for r in data["results"]:
        assert len(r["top"]) == 2 and r["top"][0]["prob"] >= r["top"][1]["prob"]
    # the same numbers as the Python API
    model, _, _ = biomedclip.load(tiny_model_dir)
    api = biomedclip.zero_shot(model, example_images, data["labels"]).top_k(2)
    for r, row in zip(data["results"], api):
        assert r["top"][0]["label"] == row[0][0]
        assert r["top"][0]["prob"] == pytest.approx(row[0][1], abs=1e-6)


def test_classify_table_and_bad_file(capsys, tiny_model_dir, example_images, tmp_path):
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(example_images[0].read_bytes()[:200])
    missing = tmp_path / "missing.png"
    code, out, err = run_main(
        capsys,
        "classify",
        example_images[0],
        bad,
        missing,
        example_images[1],
        "--labels",
        "red, blue",
        "--model",
        tiny_model_dir,
    )
    assert code == 1  # failures are reported ...
    assert "truncated.jpg" in err and "missing.png" in err
    assert example_images[0].name in out and example_images[1].name in out  # ... others classified
    assert "2 of 4 image(s) could not be read" in out


@pytest.mark.parametrize("labels", ["", "a,,b", " , "])
def test_classify_refuses_empty_labels(capsys, tiny_model_dir, example_images, labels):
    code, _, err = run_main(
        capsys, "classify", example_images[0], "--labels", labels, "--model", tiny_model_dir
    )
    assert code == 2 and ("empty" in err.lower() or "no labels" in err.lower())


def test_info_json(capsys, tiny_model_dir):
    code, out, _ = run_main(capsys, "info", "--model", tiny_model_dir, "--json")
    d = json.loads(out)
    assert code == 0 and d["embed_dim"] == 32 and len(d["sha256"]) == 64
    assert d["parameters"]["total"] == d["parameters"]["image"] + d["parameters"]["text"] + 1
    assert d["is_released_checkpoint"] is False


def test_convert_bin_to_safetensors(capsys, tiny_model_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    model = biomedclip.load_model(tiny_model_dir)
    torch.save(
        {"state_dict": {"module." + k: v for k, v in model.state_dict().items()}},
        src / "open_clip_pytorch_model.bin",
    )
    (src / "open_clip_config.json").write_text(
        (tiny_model_dir / "open_clip_config.json").read_text()
    )
    code, out, _ = run_main(
        capsys,
        "convert",
        src / "open_clip_pytorch_model.bin",
        tmp_path / "out",
        "--tokenizer",
        tiny_model_dir,
        "--json",
    )
    assert code == 0 and json.loads(out)["verified"] is True
    assert (tmp_path / "out" / "open_clip_model.safetensors").is_file()
    again = biomedclip.load_model(tmp_path / "out")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_missing_model_is_a_clear_error(capsys, tmp_path, example_images):
    code, _, err = run_main(
        capsys, "classify", example_images[0], "--labels", "a, b", "--model", tmp_path / "nowhere"
    )
    assert code == 2 and "nowhere" in err and "no such file or directory" in err


@pytest.mark.slow
def test_classify_full_architecture_checkpoint(capsys, tmp_path, hub_dir, example_images):
    """The README's demo: a locally saved random-weight full-size checkpoint, the 9 examples."""
    torch.manual_seed(0)
    model = biomedclip.create_model()
    _, _, tok = biomedclip.load(biomedclip.ModelConfig.tiny(), tokenizer=hub_dir)
    model.save_pretrained(tmp_path / "full", tokenizer=tok)
    code, out, _ = run_main(
        capsys,
        "classify",
        *example_images,
        "--model",
        tmp_path / "full",
        "--labels",
        "chest X-ray, brain MRI, bone X-ray, pie chart",
        "--json",
    )
    assert code == 0 and len(json.loads(out)["results"]) == 9
