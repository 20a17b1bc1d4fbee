"""`biomedclip eval ...` end to end with the tiny model: reports, bad images, missing datasets."""

from __future__ import annotations

import json

import pytest

from biomedclip.cli.main import main
from tests.conftest import shared_path

from .fixtures import write_class_folders


def test_zeroshot_folder_with_a_bad_image(tiny_model_dir, tmp_path, capsys):
    root = write_class_folders(
        tmp_path / "data", {"chest x ray": (90, 90, 90), "brain mri": (30, 30, 30)}, 6
    )
    (root / "brain mri" / "brain mri_002.png").write_bytes(b"GIF89a broken")
    out = tmp_path / "report"
    args = ["eval", "zeroshot", str(root), "--split", "all", "--model", str(tiny_model_dir),
            "--no-cache", "--json", "--bootstrap", "100", "--out", str(out), "--templates", "paper"]  # fmt: skip
    assert main(args) == 1  # an image was left out
    res = json.loads(capsys.readouterr().out)
    [r] = res["results"]
    assert r["n_samples"] == 11 and r["n_failed"] == 1
    assert r["failures"][0]["id"] == "brain mri/brain mri_002.png"
    assert r["classes"] == ["brain mri", "chest x ray"]
    assert set(r["metrics"]) >= {
        "acc1",
        "acc5",
        "mean_per_class_recall",
        "macro_f1",
        "auroc",
        "ece",
    }
    assert set(r["ci95"]) == set(r["metrics"])
    assert (out / "results.json").is_file() and (out / "results.csv").is_file()
    assert "Unreadable images" in (out / "report.md").read_text()
    assert (out / "plots" / f"{root.name}-zeroshot_classification-confusion.png").is_file()


def test_reproduce_on_shared_data(tiny_model_dir, tmp_path, capsys):
    data = shared_path(".")
    shared_path("lc25000_lung")
    out = tmp_path / "rep"
    args = ["eval", "reproduce", "--data-root", str(data), "--model", str(tiny_model_dir),
            "--datasets", "lc25000_lung,pcam", "--tasks", "zeroshot,linear-probe",
            "--feature-cache", str(tmp_path / "cache"), "--bootstrap", "100", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "not evaluated" in text and "camelyonpatch_level_2_split_test_x.h5" in text
    md = (out / "report.md").read_text()
    assert "| LC25000 (lung) | " in md and "| accuracy | 65.23 |" in md and "## Linear probe" in md
    assert "not comparable (split)" in md  # our hash split is not the paper's: no difference
    records = json.loads((out / "results.json").read_text())
    assert [r["task"] for r in records] == ["zeroshot_classification"] + ["linear_probe"] * 3
    assert records[0]["n_samples"] == 120
    # the features of each split were cached once and reused by the probe's three fractions
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_errors_and_help(tiny_model_dir, capsys):
    assert main(["eval", "zeroshot", "lc25000_lung", "--model", str(tiny_model_dir)]) == 2
    assert "--data-root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "few-shot", "--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and "--method" in help_text and "--precision" in help_text


def test_retrieval_report_format(tiny_model_dir, tmp_path, capsys):
    jsonl = shared_path("pmc", "medicat", "sample.jsonl")
    out = tmp_path / "r"
    assert (
        main(
            [
                "eval",
                "retrieval",
                str(jsonl),
                "--model",
                str(tiny_model_dir),
                "--json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    [rec] = json.loads((out / "results.json").read_text())
    assert rec["task"] == "zeroshot_retrieval" and rec["n_samples"] == 10
    assert rec["metrics"]["image_retrieval_recall@10"] == 1.0
