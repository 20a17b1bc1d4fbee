"""Top-K pooling, the labelled cohort table and the `slide mil` / `slide eval` commands on a
small cohort of synthetic 32-d features (the tiny model's width; no image is decoded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biomedclip.errors import InputError
from tests.conftest import run_main
from tests.slide.mil_cohort import build_mil_cohort


def test_top_k_pooling_is_the_mean_of_the_k_best_patches():
    from biomedclip.slide.features_file import SlideFeatures
    from biomedclip.slide.zeroshot import parse_poolings, pool, zero_shot_slide

    rng = np.random.default_rng(0)
    sims = rng.normal(size=(30, 3))
    for k in (1, 5, 30, 100):
        want = np.sort(sims, 0)[::-1][: min(k, 30)].mean(0)
        np.testing.assert_allclose(pool(sims, k), want, rtol=1e-6)
    np.testing.assert_allclose(pool(sims, "mean"), sims.mean(0))
    assert parse_poolings("1, 5,mean,5") == [1, 5, "mean"]
    for bad in ("0", "top", ""):
        with pytest.raises(InputError):
            parse_poolings(bad)
    # one strongly matching patch decides top-1 but not the mean
    w = np.eye(2, 8, dtype=np.float32)
    feats = np.tile(w[0] + 0.01, (20, 1))
    feats[7] = w[1]
    sf = SlideFeatures(feats, np.arange(40).reshape(20, 2))
    r = zero_shot_slide(sf, w, ["a", "b"], 100.0, [1, "mean"])
    assert r.prediction == "b" and r.scores["mean"][0] > r.scores["mean"][1]
    assert r.top_patches["b"][0] == {"x": 14, "y": 15, "score": pytest.approx(1.0), "index": 7}


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """24 slides of 12 patients; tumour/normal patch features from two 32-d clusters."""
    rng = np.random.default_rng(1)
    centre = rng.normal(size=(2, 32))
    tumour = centre[0] + 0.3 * rng.normal(size=(6, 32))
    normal = centre[1] + 0.3 * rng.normal(size=(8, 32))
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    root = tmp_path_factory.mktemp("small_cohort")
    return build_mil_cohort(root, unit(tumour), unit(normal), n_patients=12)


def test_read_labelled_cohort_checks_rows(tmp_path):
    from biomedclip.slide.labelled import load_bags, read_labelled_cohort

    p = tmp_path / "c.csv"
    # the manifest of `slide features` (with a path column) is also the cohort table
    p.write_text("slide_id,path,label,patient_id\n007,a.svs,tumor,A\n008,b.svs,normal,\n")
    c = read_labelled_cohort(p)
    assert c.slide_ids == ["007", "008"] and c.patients == ["A", "slide:008"]
    assert c.classes == ["normal", "tumor"] and c.y.tolist() == [1, 0]
    with pytest.raises(InputError, match="no feature file .*007"):
        load_bags(c, tmp_path)
    p.write_text("slide_id,label\n1,tumor\n2,\n")
    with pytest.raises(InputError, match="data row 2: slide '2' has no label"):
        read_labelled_cohort(p)
    p.write_text("slide_id,diagnosis\n1,tumor\n")
    with pytest.raises(InputError, match="no 'label' column"):
        read_labelled_cohort(p)


def test_mil_cli_resumes_and_eval_reports_side_by_side(small_cohort, tiny_model_dir, capsys):
    run = small_cohort.root / "run"
    args = ["slide", "mil", "--cohort", small_cohort.csv, "--features", small_cohort.root,
            "--out", run, "--folds", 3, "--epochs", 6, "--lr", 5e-3, "--bootstrap", 50]  # fmt: skip
    code, out, err = run_main(capsys, *args, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["slides"] == 24 and summary["patients"] == 12
    assert set(summary["models"]) == {"abmil", "meanpool-lr"}
    for m in summary["models"].values():
        assert len(m["folds"]) == 3 and {"mean", "std"} <= set(m["auroc"])
    folds = sorted((run / "folds").glob("fold_*.json"))
    assert len(folds) == 3 and len(list((run / "models").glob("*.safetensors"))) == 3
    stamps = [f.stat().st_mtime_ns for f in folds]

    # the same run again resumes (no fold retrained); the table names every model
    code, out, err = run_main(capsys, *args)
    assert code == 0, err
    assert [f.stat().st_mtime_ns for f in folds] == stamps
    assert "ABMIL" in out and "mean-pool + LR" in out
    # another configuration in the same folder is refused, not mixed
    code, _, err = run_main(capsys, *args[:-2], "--seed", 3)
    assert code == 2 and "another cohort or configuration" in err

    report = small_cohort.root / "report.md"
    code, out, err = run_main(
        capsys, "slide", "eval", "--cohort", small_cohort.csv, "--features", small_cohort.root,
        "--mil", run, "--folds", 3, "--epochs", 6, "--lr", 5e-3, "--bootstrap", 50,
        "--prompt", "tumor=lung adenocarcinoma", "--poolings", "1,10,mean", "--out", report,
        "--model", tiny_model_dir,
    )  # fmt: skip
    assert code == 0, err
    table = report.read_text()
    for method in ("ABMIL (3-fold CV)", "mean-pool + LR (3-fold CV)",
                   "zero-shot top-1", "zero-shot top-10", "zero-shot mean"):  # fmt: skip
        assert f"| {method} |" in table
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["prompts"] == ["normal", "lung adenocarcinoma"] and len(doc["slides"]) == 24
    assert [f.stat().st_mtime_ns for f in folds] == stamps

    code, _, err = run_main(capsys, "slide", "eval", "--cohort", small_cohort.csv, "--features",
                            small_cohort.root, "--prompt", "cancer=x", "--model", tiny_model_dir)  # fmt: skip
    assert code == 2 and "'cancer' is not a class" in err
