"""Issue 19, VQA: exact match (the literature's headline) with the lenient score beside it;
PathVQA in its public layouts; both VQA-RAD splits in common use; Windows separators."""

from __future__ import annotations

import json
import pickle

import pytest
from PIL import Image

from biomedclip.vqa.data import QAItem, load_file, load_pathvqa, load_split
from biomedclip.vqa.metrics import markdown_report, score


def qa(raw, kind="OPEN", qtype="X"):
    from biomedclip.vqa.answers import published_answer

    return QAItem("q", "i.png", "q?", published_answer(raw), raw, kind, qtype, "vqa_rad")


def test_exact_match_is_the_headline_and_lenient_is_beside_it():
    items = [qa("Two"), qa("The liver"), qa("Yes.", "CLOSED"), qa("Y", "CLOSED"), qa("left lung")]
    preds = ["2", "liver", "yes", "yes", "left  lung"]
    m = score(items, preds, n_boot=50)
    # exact (the published normalisation of both sides): "two"/"2", "the liver"/"liver",
    # "Yes."/"yes", "left  lung"; not "y"/"yes" (only lenient folds yes/no variants)
    assert m["overall"]["accuracy"] == m["overall"]["exact_match"] == pytest.approx(4 / 5)
    assert m["overall"]["lenient_accuracy"] == pytest.approx(5 / 5)
    assert m["closed"]["accuracy"] == 0.5 and m["closed"]["lenient_accuracy"] == 1.0
    lo, hi = m["overall"]["lenient_accuracy_ci95"]
    assert lo <= 1.0 <= hi
    md = markdown_report({"model": "m", "dataset": "vqa_rad", "split": "test",
                          "vocabulary": "train", "n_answers": 3, "metrics": m})  # fmt: skip
    assert "| exact match % |" in md and "| lenient % |" in md and "| overall | 5 | 80.0 |" in md


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (120, 30, 60)).save(path)
    return path


def test_pathvqa_pickle_and_json_with_windows_separators(tmp_path):
    root = tmp_path / "pvqa"
    for name in ("train_0001", "test_0001", "test_0002"):
        _jpg(root / "images" / name.split("_")[0] / f"{name}.jpg")
    (root / "qas" / "train").mkdir(parents=True)
    rows = [{"image": "train_0001", "question": "Is this necrosis?", "answer": "yes"},
            {"image": "train_0001", "question": "What is shown?", "answer": "granuloma"}]  # fmt: skip
    (root / "qas" / "train" / "train_qa.pkl").write_bytes(pickle.dumps(rows))
    train = load_pathvqa(root, "train")
    assert [it.answer_type for it in train] == ["CLOSED", "OPEN"]
    assert all(it.image == str(root / "images" / "train" / "train_0001.jpg") for it in train)
    rows = [{"image": "images\\test\\test_0001.jpg", "question": "Q1?", "answer": "no"},
            {"image": "images/test/test_0002.jpg", "question": "Q2?", "answer": "Fibrosis"}]  # fmt: skip
    (root / "test.json").write_text(json.dumps(rows))
    test = load_split("pathvqa", "test", str(root))
    assert [it.image for it in test] == [str(root / "images/test/test_0001.jpg"),
                                         str(root / "images/test/test_0002.jpg")]  # fmt: skip
    from pathlib import Path

    assert all(Path(it.image).is_file() for it in test)

    # a pickle holding anything but plain data is refused
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (root / "qas" / "val").mkdir()
    (root / "qas" / "val" / "val_qa.pkl").write_bytes(pickle.dumps([Evil()]))
    from biomedclip.errors import ConfigError

    with pytest.raises(ConfigError, match="refusing to unpickle"):
        load_pathvqa(root, "val")


def test_file_with_image_path_column_and_windows_separators(tmp_path):
    _jpg(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "q.csv").write_text("image_path,question,answer\nimgs\\a.jpg,Is it red?,Yes\n")
    [it] = load_file(tmp_path / "q.csv")
    assert it.image == str(tmp_path / "imgs" / "a.jpg") and it.answer == "yes"


def test_both_vqa_rad_splits(vqa_rad_dir):
    mevf = {s: load_split("vqa_rad", s, str(vqa_rad_dir)) for s in ("train", "test")}
    hf = {s: load_split("vqa_rad_hf", s, str(vqa_rad_dir)) for s in ("train", "test")}
    assert (len(mevf["train"]), len(mevf["test"])) == (3064, 451)
    assert (len(hf["train"]), len(hf["test"])) == (1793, 451)
    key = lambda it: (it.image, it.question.lower(), it.raw_answer.lower())  # noqa: E731
    assert not {key(i) for i in hf["train"]} & {key(i) for i in hf["test"]}
    assert len({key(i) for i in hf["train"]}) == 1793
