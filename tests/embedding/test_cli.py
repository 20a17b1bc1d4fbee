"""``biomedclip embed`` from the command line: .npy, .json, Parquet datasets, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biomedclip.cli.main import main
from biomedclip.embedding import read_embeddings, read_manifest
from tests.conftest import shared_path


def test_two_images_to_npy(tiny_model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    rc = main(
        [
            "embed",
            str(image_dir / "a.png"),
            str(image_dir / "b.jpg"),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert rc == 0
    arr = np.load(out)
    assert arr.shape == (2, 32) and arr.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert "wrote 2 image embedding(s)" in capsys.readouterr().out


def test_texts_to_json(tiny_model_dir, tmp_path):
    out = tmp_path / "t.json"
    rc = main(
        [
            "embed",
            "--text",
            "chest x ray",
            "--text",
            "brain mri",
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [i["id"] for i in doc["items"]] == ["text-0", "text-1"]
    assert doc["dim"] == 32 and doc["normalized"] and doc["errors"] == []
    assert abs(np.linalg.norm(doc["items"][0]["embedding"]) - 1) < 1e-5


def test_bad_file_gives_exit_1_and_the_good_rows(tiny_model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    rc = main(
        [
            "embed",
            str(image_dir / "a.png"),
            str(image_dir / "sub" / "broken.jpg"),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert rc == 1
    assert np.load(out).shape == (1, 32)
    assert "broken.jpg" in capsys.readouterr().err


def test_no_out_prints_json(tiny_model_dir, capsys):
    rc = main(["embed", "--text", "mri", "--json", "--model", str(tiny_model_dir)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["items"]) == 1 and len(doc["items"][0]["embedding"]) == 32


def test_npy_refuses_two_modalities(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "p.csv").write_text("path,caption\nx.png,a\n")
    rc = main(
        [
            "embed",
            str(tmp_path / "p.csv"),
            "--modality",
            "both",
            "--out",
            str(tmp_path / "e.npy"),
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert rc == 2 and "one modality" in capsys.readouterr().err


def test_real_folder_to_dataset_and_resume(tiny_model_dir, tmp_path, capsys):
    folder = shared_path("lc25000_lung", "lung_n")
    out = tmp_path / "ds"
    args = [
        "embed",
        str(folder),
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--batch-size",
        "50",
        "--workers",
        "1",
        "--no-progress",
        "--json",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 200 and summary["failed"] == 0
    ids, emb, _ = read_embeddings(out)
    assert len(ids) == 200 and emb.shape == (200, 32)
    assert read_manifest(out)["count"] == 200
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["images"] == 0 and again["already_done"] == 200
    assert len(read_embeddings(out)[0]) == 200


def test_text_file_to_dataset(tiny_model_dir, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("chest x ray\nbrain mri\n\nbone\n")
    out = tmp_path / "ds"
    assert (
        main(
            [
                "embed",
                str(f),
                "--out",
                str(out),
                "--model",
                str(tiny_model_dir),
                "--no-progress",
                "--storage-dtype",
                "float16",
            ]
        )
        == 0
    )
    ids, emb, table = read_embeddings(out)
    assert sorted(ids) == ["line-1", "line-2", "line-4"]
    assert set(table.column("modality").to_pylist()) == {"text"}
    assert read_manifest(out)["dtype"] == "float16"


@pytest.mark.parametrize("flag", [["--engine", "ray", "--out", "x.npy"]])
def test_ray_needs_a_dataset_out(tiny_model_dir, flag, capsys):
    assert main(["embed", "--text", "a", "--model", str(tiny_model_dir), *flag]) == 2
    assert "--out DIR" in capsys.readouterr().err
