"""`biomedclip vqa eval` and `vqa ask` on a briefly trained tiny model; help texts; bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_main
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


def test_eval_writes_reports(capsys, trained, vqa_rad_dir):
    out = trained / "report"
    code, stdout, stderr = run_main(
        capsys, "vqa", "eval", "--model", trained / "run" / "final", "--dataset", "vqa_rad",
        "--root", vqa_rad_dir, "--out", out, "--bootstrap", "100", "--json",
    )  # fmt: skip
    assert code == 0, stderr[-2000:]
    report = json.loads(stdout)
    assert report["vocabulary"] == "closed-world" and report["metrics"]["overall"]["n"] == 451
    # closed-world vocabulary: every test answer is in it
    assert report["metrics"]["out_of_vocabulary"]["overall"] == 0
    assert report["published"] == {"open": 67.6, "closed": 79.8}
    md = (out / "report.md").read_text()
    assert "closed-world" in md and "| closed | 272 |" in md
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 451 and json.loads(rows[0])["top"]


def test_ask_dicom_json_and_errors(capsys, trained):
    pydicom = pytest.importorskip("pydicom")
    dcm = pydicom.data.get_testdata_file("CT_small.dcm")
    model = str(trained / "run" / "final")
    code, out, err = run_main(
        capsys, "vqa", "ask", dcm, "Is there a mass?", "--model", model, "--top-k", "3", "--json"
    )
    assert code == 0, err[-2000:]
    answers = json.loads(out)["answers"]
    assert len(answers) == 3 and all(0 <= a["probability"] <= 1 for a in answers)
    code, _, err = run_main(capsys, "vqa", "ask", trained / "nope.png", "Is it?", "--model", model)
    assert code == 2 and "nope.png" in err
    code, _, err = run_main(capsys, "vqa", "ask", dcm, "Q?", "--model", trained)
    assert code == 2 and "not a VQA model" in err


def test_help_has_examples(capsys):
    for cmd in ("train", "eval", "ask"):
        code, out, _ = run_main(capsys, "vqa", cmd, "--help")
        assert code == 0 and "examples:" in out


def test_eval_files_windows_separators_and_unreadable_images(
    capsys, trained, vqa_rad_dir, tmp_path
):
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
    code, out, err = run_main(capsys, *base, "--file", tmp_path / "ok.csv")
    assert code == 0, err[-2000:]
    m = json.loads(out)["metrics"]
    assert m["overall"]["n"] == 3 and m["no_prediction"] == 0
    assert {"accuracy", "exact_match", "lenient_accuracy"} <= set(m["overall"])

    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "some.csv").write_text("\n".join(rows + ["imgs\\broken.jpg,Q?,yes,CLOSED"]) + "\n")
    code, out, _ = run_main(capsys, *base, "--file", tmp_path / "some.csv")
    assert code == 1 and json.loads(out)["metrics"]["no_prediction"] == 1
    code, out, _ = run_main(capsys, *base[:-1], "--file", tmp_path / "some.csv")
    assert code == 1 and "1 question(s) without a prediction" in out

    (tmp_path / "none.csv").write_text(
        "image_path,question,answer\nimgs\\broken.jpg,Q?,yes\nimgs\\gone.jpg,Q?,no\n"
    )
    code, _, err = run_main(capsys, *base, "--file", tmp_path / "none.csv")
    assert code == 2 and "broken.jpg" in err and "could be read" in err
