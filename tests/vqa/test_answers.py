"""Answer normalisation on real VQA-RAD and SLAKE answers, the loaders' splits, the vocabulary."""

from __future__ import annotations

import json

import pytest

from biomedclip.errors import ConfigError
from biomedclip.vqa.answers import AnswerVocab, normalize_answer
from biomedclip.vqa.data import load_file, load_slake, load_vqa_rad


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes", "yes"),
        ("yes", "yes"),
        ("No", "no"),
        ("No.", "no"),
        (4, "4"),  # VQA-RAD stores some counts as JSON numbers
        ("one", "1"),
        ("Right lung", "right lung"),
        ("Transverse  Plane", "transverse plane"),  # SLAKE double space
        ("X-Ray", "x ray"),
        ("Atelectasis, Effusion", "atelectasis effusion"),
        ("the left kidney", "left kidney"),
        ("1.5 cm", "1.5 cm"),
        ("Heart's apex", "hearts apex"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_real_answers_both_datasets(vqa_rad_dir, slake_dir):
    rad_raw = json.loads((vqa_rad_dir / "trainset.json").read_text())
    rad = load_vqa_rad(vqa_rad_dir, "train")
    assert len(rad) == 3064 and len(load_vqa_rad(vqa_rad_dir, "test")) == 451
    # case variants of yes/no collapse: 513 "Yes" + 315 "yes" ...
    raw_yes = sum(str(r["answer"]).strip().lower() == "yes" for r in rad_raw)
    assert sum(it.answer == "yes" for it in rad) == raw_yes > 828
    assert {it.answer_type for it in rad} == {"CLOSED", "OPEN"}  # "CLOSED " trimmed
    assert len({it.answer for it in rad}) < len({str(r["answer"]) for r in rad_raw})
    assert all(it.answer == it.answer.strip().lower() and "  " not in it.answer for it in rad)

    slake = load_slake(slake_dir, "train")
    assert (len(slake), len(load_slake(slake_dir, "val")), len(load_slake(slake_dir, "test"))) == (
        4919,
        1053,
        1061,
    )
    answers = {it.raw_answer: it.answer for it in slake}
    assert answers["Transverse  Plane"] == answers["Transverse Plane"] == "transverse plane"
    assert answers["X-Ray"] == "x ray" and answers["Yes"] == "yes"
    assert slake[0].question_type == "MODALITY" and slake[0].image.endswith("xmlab1/source.jpg")


def test_vocab_build_save_load(tmp_path):
    vocab = AnswerVocab.build(["yes", "no", "yes", "lung", "liver", "lung", "yes"], min_count=2)
    assert vocab.answers == ["yes", "lung"] and vocab.source == "train"
    assert vocab.index("lung") == 1 and vocab.index("liver") == -1 and "liver" not in vocab
    vocab.save(tmp_path / "v.json")
    again = AnswerVocab.load(tmp_path / "v.json")
    assert again.answers == vocab.answers and again.source == "train"
    with pytest.raises(ConfigError, match="empty"):
        AnswerVocab.build([])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json"):
        AnswerVocab.load(tmp_path / "bad.json")


def test_generic_csv_and_json(tmp_path):
    (tmp_path / "q.csv").write_text(
        "image,question,answer,answer_type\nimg/a.png,Is it normal?,Yes,\nimg/b.png,Which organ?,Liver,OPEN\n"
    )
    items = load_file(tmp_path / "q.csv")
    assert [it.answer_type for it in items] == ["CLOSED", "OPEN"]  # yes/no inferred as closed
    assert items[0].image == str(tmp_path / "img/a.png") and items[1].answer == "liver"
    (tmp_path / "q.json").write_text(
        json.dumps({"data": [{"image": "/x.png", "question": "Q?", "answer": 2}]})
    )
    assert load_file(tmp_path / "q.json")[0].answer == "2"
    (tmp_path / "bad.json").write_text(
        json.dumps([{"image": "a.png", "question": " ", "answer": "x"}])
    )
    with pytest.raises(Exception, match="empty question"):
        load_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="not found"):
        load_file(tmp_path / "missing.json")
