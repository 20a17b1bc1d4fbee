"""Dataset adapters: the real shared data (LC25000 lung, SLAKE, VQA-RAD) and fixture files written
in each public format (PCam h5, RSNA CSV + DICOM, class folders, CSV/Parquet tables)."""

from __future__ import annotations

import numpy as np
import pytest

from biomedclip.errors import InputError
from biomedclip.eval.datasets import hash_split, load_dataset, pcam, table_dataset
from tests.conftest import shared_path

from .fixtures import write_class_folders, write_pcam, write_png, write_rsna


@pytest.fixture(scope="module")
def data_root():
    return shared_path(".")


def test_lc25000_lung_real_splits(data_root):
    shared_path("lc25000_lung")
    splits = {s: load_dataset("lc25000_lung", data_root, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 420, "val": 60, "test": 120}
    assert splits["test"].classes == ["lung_aca", "lung_n", "lung_scc"]
    assert splits["test"].class_counts() == {"lung_aca": 40, "lung_n": 40, "lung_scc": 40}
    ids = [set(d.ids) for d in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    whole = load_dataset("lc25000_lung", data_root / "lc25000_lung", "all")
    assert len(whole) == 600 and set().union(*ids) == set(whole.ids)
    # the split is decided by the ids, not by listing order
    again = load_dataset("lc25000_lung", data_root, "test")
    assert again.ids == splits["test"].ids and again.fingerprint == splits["test"].fingerprint
    src = splits["test"].sources([0, 5])
    assert all(p.is_file() for p in src)


def test_slake_modality_and_organ(data_root):
    shared_path("slake")
    mod = {s: load_dataset("slake_modality", data_root, s) for s in ("train", "val", "test")}
    assert [len(mod[s]) for s in ("train", "val", "test")] == [450, 96, 96]
    assert mod["test"].classes == ["CT", "MRI", "X-Ray"]
    assert mod["test"].class_counts() == {"CT": 40, "MRI": 26, "X-Ray": 30}
    organ = load_dataset("slake_organ", data_root, "test")
    assert organ.classes == ["abdomen", "chest", "head", "neck", "pelvic cavity"]
    assert 0 < len(organ) < 96 and "left out" in organ.notes[0]
    val = load_dataset("slake_organ", data_root, "val")
    assert val.classes == organ.classes  # the same classes in every split
    for path in organ.sources(range(3)):
        assert path.is_file() and path.name == "source.jpg"


def test_vqa_rad_organ(data_root):
    shared_path("vqa_rad")
    test = load_dataset("vqa_rad_organ", data_root, "test")
    train = load_dataset("vqa_rad_organ", data_root, "train")
    assert test.classes == ["abdomen", "chest", "head"]
    assert len(test) + len(train) + len(load_dataset("vqa_rad_organ", data_root, "val")) == 314
    assert not set(test.ids) & set(train.ids)


def test_pcam_h5_is_read_lazily(tmp_path):
    x, y = write_pcam(tmp_path / "pcam", "test", 10)
    ds = pcam(tmp_path, "test")
    assert len(ds) == 10 and ds.classes == ["normal", "tumor"]
    np.testing.assert_array_equal(ds.labels, y)
    images = ds.sources([7, 2])  # any order
    np.testing.assert_array_equal(np.asarray(images[0]), x[7])
    np.testing.assert_array_equal(np.asarray(images[1]), x[2])
    sub = ds.subset([3, 4])
    np.testing.assert_array_equal(np.asarray(sub.sources([1])[0]), x[4])
    with pytest.raises(InputError, match="camelyonpatch_level_2_split_valid_x.h5"):
        pcam(tmp_path, "val")
    (tmp_path / "pcam" / "camelyonpatch_level_2_split_train_x.h5.gz").write_bytes(b"")
    with pytest.raises(InputError, match="decompress"):
        pcam(tmp_path, "train")


def test_pcam_mismatched_files(tmp_path):
    write_pcam(tmp_path, "test", 6)
    write_pcam(tmp_path / "other", "test", 4)
    (tmp_path / "other" / "camelyonpatch_level_2_split_test_y.h5").replace(
        tmp_path / "camelyonpatch_level_2_split_test_y.h5"
    )
    with pytest.raises(InputError, match="must match"):
        pcam(tmp_path, "test")


def test_rsna_one_label_per_patient(tmp_path):
    patients = {f"p{i:02d}": [0] for i in range(10)}
    patients.update({f"q{i:02d}": [1, 1] if i % 2 else [1] for i in range(10)})
    root = write_rsna(tmp_path / "rsna_pneumonia", patients)
    ds = load_dataset("rsna_pneumonia", tmp_path, "all")
    assert len(ds) == 20 and ds.classes == ["normal", "pneumonia"]
    assert ds.class_counts() == {"normal": 10, "pneumonia": 10}
    test = load_dataset("rsna_pneumonia", tmp_path, "test")
    assert test.class_counts() == {"normal": 2, "pneumonia": 2}
    from biomedclip.imaging import load_image

    image = load_image(test.sources([0])[0], mode=None)  # the project's DICOM reader
    assert image.size == (32, 32)
    (root / "stage_2_train_images" / "q03.dcm").unlink()
    with pytest.raises(InputError, match="q03.dcm"):
        load_dataset("rsna_pneumonia", tmp_path, "test")
    with pytest.raises(InputError, match="stage_2_train_labels.csv"):
        load_dataset("rsna_pneumonia", tmp_path / "nowhere", "test")


def test_image_folder_lc25000_layout_and_half_present(tmp_path):
    sets = tmp_path / "lung_colon_image_set" / "colon_image_sets"
    write_class_folders(sets, {"colon_aca": (200, 80, 120), "colon_n": (230, 180, 200)}, 10)
    ds = load_dataset("lc25000_colon", tmp_path, "all")
    assert ds.classes == ["colon_aca", "colon_n"] and len(ds) == 20
    assert len(load_dataset("lc25000_colon", tmp_path, "test")) == 4
    with pytest.raises(InputError, match="lung_aca"):
        load_dataset("lc25000_lung", tmp_path, "test")
    # half-present: one class folder missing
    write_class_folders(tmp_path / "lc25000_lung", {"lung_aca": (1, 2, 3), "lung_n": (3, 2, 1)}, 2)
    with pytest.raises(InputError, match="half-present.*lung_scc"):
        load_dataset("lc25000_lung", tmp_path, "test")
    generic = load_dataset(str(sets), tmp_path, "train")
    assert generic.classes == ["colon_aca", "colon_n"] and len(generic) == 14


def test_tcga_til_nested_folders(tmp_path):
    for cancer in ("brca", "luad"):
        write_class_folders(
            tmp_path / "tcga_til" / cancer,
            {"til-negative": (220, 200, 210), "til-positive": (90, 60, 140)},
            5,
        )
    ds = load_dataset("tcga_til", tmp_path, "all")
    assert ds.classes == ["til-negative", "til-positive"] and len(ds) == 20
    assert ds.class_counts() == {"til-negative": 10, "til-positive": 10}
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="tcga_til"):
        load_dataset("tcga_til", tmp_path / "x", "test")


def test_tables_single_and_multi_label(tmp_path):
    import pandas as pd

    rows = []
    for i in range(12):
        p = write_png(tmp_path / "img" / f"{i}.png", (10 * i, 0, 0))
        rows.append({"path": str(p.relative_to(tmp_path)), "label": "ab"[i % 2],
                     "findings": ["effusion", "effusion|edema", "edema"][i % 3],
                     "effusion": int(i % 3 < 2), "edema": int(i % 3 > 0),
                     "split": ["train", "test"][i % 2 and i > 6]})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    single = table_dataset(tmp_path / "t.csv", "all")
    assert single.classes == ["a", "b"] and single.labels.tolist() == [0, 1] * 6
    assert single.sources([0])[0] == tmp_path / "img" / "0.png"
    multi = table_dataset(tmp_path / "t.parquet", "all", label_cols=["findings"], label_sep="|")
    assert multi.multilabel and multi.classes == ["edema", "effusion"]
    assert multi.labels[:3].tolist() == [[0, 1], [1, 1], [1, 0]]
    cols = table_dataset(tmp_path / "t.csv", "all", label_cols=["effusion", "edema"])
    np.testing.assert_array_equal(cols.labels[:, ::-1], multi.labels)
    official = table_dataset(tmp_path / "t.csv", "test")
    assert official.ids == [rows[i]["path"] for i in (7, 9, 11)]
    with pytest.raises(InputError, match="label column"):
        table_dataset(tmp_path / "t.csv", "all", label_cols=["nope"])
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("not_a_dataset", tmp_path)


def test_hash_split_is_stratified_and_order_free():
    ids = [f"img{i}" for i in range(200)]
    labels = np.array([i % 4 for i in range(200)])
    a = hash_split(ids, labels)
    perm = np.random.default_rng(0).permutation(200)
    b = hash_split([ids[i] for i in perm], labels[perm])
    assert {s: sorted(ids[i] for i in v) for s, v in a.items()} == {
        s: sorted(ids[perm[i]] for i in v) for s, v in b.items()
    }
    assert [len(a[s]) for s in ("train", "val", "test")] == [140, 20, 40]
    assert np.bincount(labels[a["test"]]).tolist() == [10] * 4
