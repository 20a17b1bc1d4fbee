"""`slide features` end to end on small real slides with the tiny model: the feature files, bad
slides in errors.jsonl, resume after SIGKILL, and equality with `embed` of the same patch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from biomedclip.slide.features_file import read_features, read_h5
from tests.conftest import ROOT, run_main
from tests.slide.builders import build_slide, lc25000, truncate

N_KILL = 4  # slides in the SIGKILL test
H5_ATTRS = (
    "patch_size",
    "patch_size_level0",
    "target_magnification",
    "mpp",
    "slide_mpp",
    "model",
    "model_sha256",
    "precision",
    "preprocessing",
    "slide_id",
)


def _cohort(folder: Path, n: int, cells: int, seed: int = 0) -> dict:
    """``n`` 20x slides (224 px cells) of ``cells`` tissue cells each, tumour then normal."""
    folder.mkdir(parents=True, exist_ok=True)
    tumour, normal = lc25000("lung_aca", cells, start=seed), lc25000("lung_n", cells, start=seed)
    specs = {}
    for k in range(n):
        images = (tumour if k % 2 == 0 else normal)[:cells]
        tiles = [(im, 1 + i % 5, 1 + i // 5) for i, im in enumerate(images)]
        ny = 2 + -(-cells // 5)
        specs[f"s{k}"] = build_slide(
            folder / f"s{k}.tif", tiles, grid=(8, ny), patch_px=224, mpp=0.5, levels=2, seed=k
        )
    return specs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three good slides, one without resolution, one truncated."""
    folder = tmp_path_factory.mktemp("cohort")
    specs = _cohort(folder, 3, 6)
    bare = build_slide(
        folder / "bare.tif",
        [(im, 1 + i, 1) for i, im in enumerate(lc25000("lung_aca", 3, start=20))],
        grid=(5, 3),
        mpp=None,
        levels=2,
        pen=False,
    )
    cut = build_slide(folder / "cut.tif", [(lc25000("lung_n", 1)[0], 1, 1)], grid=(8, 6))
    truncate(cut.path, 0.4)
    return folder, specs, bare


def test_cohort_files_errors_and_rerun_with_mpp(cohort, tiny_model_dir, tmp_path, capsys):
    folder, specs, bare = cohort
    out = tmp_path / "feats"
    args = ["slide", "features", folder, "--out", out, "--model", tiny_model_dir]
    code, stdout, err = run_main(capsys, *args, "--json", "--no-progress", "--format", "both")
    summary = json.loads(stdout)
    assert code == 1 and summary["failed"] == 2 and summary["extracted"] == 3, err
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    by_id = {e["slide_id"]: e["error"] for e in errors}
    assert set(by_id) == {"bare", "cut"}
    assert "bare.tif" in by_id["bare"] and "--mpp" in by_id["bare"]
    assert "cut.tif" in by_id["cut"]

    import h5py

    for sid, spec in specs.items():
        with h5py.File(out / "h5_files" / f"{sid}.h5", "r") as f:
            feats, coords = f["features"], f["coords"]
            assert feats.dtype == np.float32 and feats.shape[1] == 32  # the tiny model's dim
            assert coords.dtype == np.int64 and coords.shape == (feats.shape[0], 2)
            assert all(k in f.attrs for k in H5_ATTRS)
            assert f.attrs["patch_size"] == 224 and f.attrs["patch_size_level0"] == 224
            assert f.attrs["target_magnification"] == 20.0 and f.attrs["mpp"] == 0.5
            assert f.attrs["model"] == str(tiny_model_dir)
            c = np.asarray(coords)
        assert {tuple(v) for v in (c // 224).tolist()} == set(spec.cells("tissue"))
        W, H = spec.levels[0]
        assert ((c >= 0) & (c + 224 <= [W, H])).all()
        h5, pq = (
            read_h5(out / "h5_files" / f"{sid}.h5"),
            read_features(out / "parquet_files" / f"{sid}.parquet"),
        )
        np.testing.assert_array_equal(h5.features, pq.features)
        np.testing.assert_array_equal(h5.coords, pq.coords)
        np.testing.assert_allclose(np.linalg.norm(h5.features, axis=1), 1.0, atol=1e-5)

    # the slide without resolution, given --mpp: done slides are not redone
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "h5_files").glob("*.h5")}
    code, stdout, _ = run_main(
        capsys, *args, "--json", "--no-progress", "--format", "both", "--mpp", "0.5"
    )
    summary = json.loads(stdout)
    assert summary["already_done"] == 3 and summary["extracted"] == 1 and summary["failed"] == 1
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    again = read_h5(out / "h5_files" / "bare.h5")
    assert again.attrs["slide_mpp_source"] == "user" and len(again) == 3
    # other settings in the same folder are refused
    code, _, err = run_main(capsys, *args, "--magnification", "10", "--no-progress")
    assert code == 2 and "other settings" in err


def test_patch_feature_equals_embed_of_the_png(tmp_path, tiny_model_dir, capsys):
    """A 40x slide whose pyramid has no 20x level: patches are read at level 0 (448 px) and
    Lanczos-resized; each feature equals `embed` of an independent OpenSlide read of the same
    region, resized the same way and saved as PNG."""
    openslide = pytest.importorskip("openslide")
    from PIL import Image

    tiles = [(im, 1 + i, 1) for i, im in enumerate(lc25000("lung_aca", 3, start=30))]
    spec = build_slide(
        tmp_path / "s40.tif", tiles, grid=(5, 3), patch_px=448, mpp=0.25, levels=2, level_factor=4
    )
    out = tmp_path / "feats"
    code, _, err = run_main(
        capsys, "slide", "features", spec.path, "--out", out, "--model", tiny_model_dir,
        "--no-progress", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, err
    sf = read_h5(out / "h5_files" / "s40.h5")
    assert sf.attrs["level"] == 0 and sf.attrs["read_size"] == 448 and len(sf) == 3
    pngs = []
    with openslide.OpenSlide(str(spec.path)) as osr:
        for i, (x, y) in enumerate(sf.coords.tolist()):
            region = osr.read_region((x, y), 0, (448, 448)).convert("RGB")
            png = tmp_path / f"patch{i}.png"
            region.resize((224, 224), Image.Resampling.LANCZOS).save(png)
            pngs.append(png)
    npy = tmp_path / "emb.npy"
    code, _, err = run_main(capsys, "embed", *pngs, "--out", npy, "--model", tiny_model_dir)
    assert code == 0, err
    np.testing.assert_allclose(sf.features, np.load(npy), atol=1e-5, rtol=0)


@pytest.mark.slow  # a subprocess killed mid-cohort
def test_sigkill_mid_cohort_then_resume(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "slides"
    _cohort(folder, N_KILL, 12, seed=40)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = ["slide", "features", str(folder), "--model", str(tiny_model_dir), "--no-progress"]
    args += ["--batch-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "biomedclip.cli.main", *args, "--out", str(killed)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    done_dir = killed / "done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if done_dir.is_dir() and any(done_dir.glob("*.json")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.stem for p in done_dir.glob("*.json"))
    assert 1 <= len(finished) < N_KILL, (finished, proc.stderr.read()[-2000:])
    mtimes = {s: (killed / "h5_files" / f"{s}.h5").stat().st_mtime_ns for s in finished}

    code, stdout, err = run_main(capsys, *args, "--out", killed, "--json")
    summary = json.loads(stdout)
    assert code == 0, err
    assert summary["already_done"] == len(finished)
    assert summary["extracted"] == N_KILL - len(finished)
    assert {s: (killed / "h5_files" / f"{s}.h5").stat().st_mtime_ns for s in finished} == mtimes
    assert not list((killed / "h5_files").glob(".*.tmp"))

    code, _, err = run_main(capsys, *args, "--out", whole)
    assert code == 0, err
    for k in range(N_KILL):
        a, b = read_h5(killed / "h5_files" / f"s{k}.h5"), read_h5(whole / "h5_files" / f"s{k}.h5")
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_array_equal(a.features, b.features)
        assert a.attrs == b.attrs


def test_cohort_inputs_folder_glob_manifest(cohort, tmp_path):
    from biomedclip.errors import InputError
    from biomedclip.slide.cohort import from_inputs

    folder, specs, _ = cohort
    ids = [s.slide_id for s in from_inputs([folder])]
    assert ids == ["bare", "cut", "s0", "s1", "s2"]
    assert [s.slide_id for s in from_inputs([str(folder / "s*.tif")])] == ["s0", "s1", "s2"]
    csv = tmp_path / "cohort.csv"
    csv.write_text(
        f"slide_id,path,label,patient_id\n007,{folder / 's0.tif'},tumour,p1\n"
        f"008,{folder / 's1.tif'},normal,p1\n"
    )
    rows = from_inputs([csv])
    assert [(s.slide_id, s.label, s.patient_id) for s in rows] == [
        ("007", "tumour", "p1"),
        ("008", "normal", "p1"),
    ]
    twice = tmp_path / "twice.csv"
    twice.write_text(f"path\n{folder / 's0.tif'}\n{folder / 's0.tif'}\n")
    with pytest.raises(InputError, match="two slides are named 's0'"):
        from_inputs([twice])
    with pytest.raises(InputError, match="nothing_here"):
        from_inputs([str(tmp_path / "nothing_here" / "*.svs")])


def test_ray_per_slide_function(cohort, tiny_model_dir, tmp_path):
    """What each Ray actor runs on its slides (a local Ray cluster costs more than this suite's
    budget; `--engine ray` reuses run_ray's wiring of embedding/ray_engine.py)."""
    import biomedclip
    from biomedclip.embedding import Encoder, EncoderSettings
    from biomedclip.slide.extract import model_attrs, patch_encoder
    from biomedclip.slide.layout import ExtractSettings
    from biomedclip.slide.ray_extract import process_rows

    folder, specs, _ = cohort
    model, pre, tok = biomedclip.load(str(tiny_model_dir))
    enc = Encoder(model, pre, tok, EncoderSettings(batch_size=4))
    settings = ExtractSettings()
    batch = {
        "slide_id": np.array(["s1", "cut"], dtype=object),
        "path": np.array([str(folder / "s1.tif"), str(folder / "cut.tif")], dtype=object),
        "label": np.array(["normal", None], dtype=object),
        "patient_id": np.array([None, None], dtype=object),
    }
    rows = process_rows(
        patch_encoder(enc), batch, tmp_path, settings, model_attrs(enc, str(tiny_model_dir))
    )
    assert rows["error"][0] == "-" and rows["patches"][0] == len(specs["s1"].cells("tissue"))
    assert "cut.tif" in rows["error"][1]
    sf = read_h5(tmp_path / "h5_files" / "s1.h5")
    assert sf.attrs["label"] == "normal" and len(sf) == rows["patches"][0]
    assert (tmp_path / "done" / "s1.json").is_file()
    assert not (tmp_path / "h5_files" / "cut.h5").exists()
