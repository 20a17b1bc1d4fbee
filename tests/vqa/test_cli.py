"""`biomedclip vqa eval` and `vqa ask` on a briefly trained tiny model; help texts; bad input."""

from __future__ import annotations

import json

import pytest

from tests.train.conftest import run_cli
from tests.vqa.conftest import tiny_vqa_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, vqa_rad_dir, hub_tokenizer_dir):
    from biomedclip.vqa.config import config_from_dict
    from biomedclip.vqa.trainer import train_vqa

    out = tmp_path_factory.mktemp("vqa_cli")
    cfg = tiny_vqa_config(
        out / "run",
        vqa_rad_dir,
        hub_tokenizer_dir,
        data={"limit_train": 64, "vocabulary": "closed-world"},
        train={"steps": 2, "global_batch_size": 32},
    )
    summary = train_vqa(config_from_dict(cfg))
    assert summary["vocabulary"] == "closed-world" and "test_closed_accuracy" in summary
    return out


def test_eval_writes_reports(trained, vqa_rad_dir):
    out = trained / "report"
    proc = run_cli(
        [
            "vqa",
            "eval",
            "--model",
            str(trained / "run" / "final"),
            "--dataset",
            "vqa_rad",
            "--root",
            str(vqa_rad_dir),
            "--out",
            str(out),
            "--bootstrap",
            "100",
            "--json",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["vocabulary"] == "closed-world" and report["metrics"]["overall"]["n"] == 451
    # closed-world vocabulary: every test answer is in it
    assert report["metrics"]["out_of_vocabulary"]["overall"] == 0
    assert report["published"] == {"open": 67.6, "closed": 79.8}
    md = (out / "report.md").read_text()
    assert "closed-world" in md and "| closed | 272 |" in md
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 451 and json.loads(rows[0])["top"]


def test_ask_dicom_json_and_errors(trained):
    pydicom = pytest.importorskip("pydicom")
    dcm = pydicom.data.get_testdata_file("CT_small.dcm")
    model = str(trained / "run" / "final")
    proc = run_cli(
        ["vqa", "ask", dcm, "Is there a mass?", "--model", model, "--top-k", "3", "--json"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout)["answers"]
    assert len(answers) == 3 and all(0 <= a["probability"] <= 1 for a in answers)
    proc = run_cli(["vqa", "ask", str(trained / "nope.png"), "Is there a mass?", "--model", model])
    assert proc.returncode == 2 and "nope.png" in proc.stderr
    proc = run_cli(["vqa", "ask", dcm, "Q?", "--model", str(trained)])
    assert proc.returncode == 2 and "not a VQA model" in proc.stderr


def test_help_has_examples():
    for cmd in ("train", "eval", "ask"):
        proc = run_cli(["vqa", cmd, "--help"])
        assert proc.returncode == 0 and "examples:" in proc.stdout


def test_eval_files_windows_separators_and_unreadable_images(trained, vqa_rad_dir, tmp_path):
    import shutil

    model = str(trained / "run" / "final")
    images = sorted((vqa_rad_dir / "images").iterdir())[:3]
    (tmp_path / "imgs").mkdir()
    for p in images:
        shutil.copy(p, tmp_path / "imgs" / p.name)
    rows = ["image_path,question,answer,answer_type"]
    rows += [f"imgs\\{p.name},Is there a fracture?,no,CLOSED" for p in images]
    (tmp_path / "ok.csv").write_text("\n".join(rows) + "\n")
    base = ["vqa", "eval", "--model", model, "--dataset", "files", "--bootstrap", "10", "--json"]
    proc = run_cli([*base, "--file", str(tmp_path / "ok.csv")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout)["metrics"]
    assert m["overall"]["n"] == 3 and m["no_prediction"] == 0
    assert {"accuracy", "exact_match", "lenient_accuracy"} <= set(m["overall"])

    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "some.csv").write_text("\n".join(rows + ["imgs\\broken.jpg,Q?,yes,CLOSED"]) + "\n")
    proc = run_cli([*base, "--file", str(tmp_path / "some.csv")])
    assert proc.returncode == 1 and json.loads(proc.stdout)["metrics"]["no_prediction"] == 1
    proc = run_cli([*base[:-1], "--file", str(tmp_path / "some.csv")])
    assert proc.returncode == 1 and "1 question(s) without a prediction" in proc.stdout

    (tmp_path / "none.csv").write_text(
        "image_path,question,answer\nimgs\\broken.jpg,Q?,yes\nimgs\\gone.jpg,Q?,no\n"
    )
    proc = run_cli([*base, "--file", str(tmp_path / "none.csv")])
    assert proc.returncode == 2 and "broken.jpg" in proc.stderr and "could be read" in proc.stderr
