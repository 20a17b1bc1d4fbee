"""Issue 24: VQA exact match in the published normalisation (METER / ViLT ``normalize_word``),
applied to both the prediction and the gold answer, so a predictor that always answers the gold
vocabulary entry scores 100 % on VQA-RAD, SLAKE and a PathVQA-format file; the lenient score
beside it; metric properties (perfect, constant, permutation) of every VQA headline number."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biomedclip.vqa.answers import AnswerVocab, lenient_answer, published_answer
from biomedclip.vqa.data import QAItem, load_split
from biomedclip.vqa.metrics import score

HEADLINES = ("accuracy", "exact_match", "lenient_accuracy", "f1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # number words -> digits
        ("None", "0"),  # normalize_word maps "none" too (SLAKE has 44 "None" answers)
        ("the left lung", "left lung"),  # articles dropped
        ("A mass", "mass"),
        ("Y", "y"),  # no yes/no folding in the published form (lenient folds it)
        ("Yes.", "yes"),  # a period not followed by a digit goes
        ("1.5 cm", "1.5 cm"),  # a decimal point stays
        ("MRI/FLAIR", "mri flair"),  # punctuation inside a word becomes a space
        ("metastases, infection/abcess, glioblastoma", "metastases infection abcess glioblastoma"),
        ("1,000", "1000"),  # digit-comma-digit: every punctuation mark is deleted
        ("On the patient's left", "on patient's left"),  # apostrophes are kept
        ("~15 minutes\tpotentially faster", "~15 minutes potentially faster"),
        ("5%", "5%"),
        (7, "7"),  # VQA-RAD stores some counts as numbers
        ("eleven", "eleven"),  # the published map stops at ten
    ],
)
def test_published_normalisation(raw, expected):
    assert published_answer(raw) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab e.1,2/- ;THE?!'\t")), max_size=24))
def test_published_normalisation_is_idempotent(text):
    once = published_answer(text)
    assert published_answer(once) == once  # a vocabulary entry normalises to itself
    assert once == once.strip() and "  " not in once


def _qa(raw, kind="OPEN", qtype="X"):
    return QAItem("q", "i.png", "q?", published_answer(raw), str(raw), kind, qtype, "t")


def test_exact_match_closes_the_gap_of_issue_24():
    """The gold answers of the issue: a perfect predictor (the vocabulary entries) scored 50 %
    exact and 100 % lenient before; it scores 100 % on both now."""
    items = [_qa("Two"), _qa("the left lung"), _qa("a mass"), _qa("Y", "CLOSED")]
    vocab = AnswerVocab.build(it.answer for it in items)
    assert set(vocab.answers) == {"2", "left lung", "mass", "y"}  # what M3AE's vocabulary holds
    m = score(items, [it.answer for it in items], set(vocab.answers), n_boot=0)
    assert m["overall"]["exact_match"] == m["overall"]["accuracy"] == 1.0
    assert m["overall"]["lenient_accuracy"] == 1.0 and m["out_of_vocabulary"]["overall"] == 0
    # lenient folds yes/no variants; exact (the published form) does not
    m = score(items, ["2", "left lung", "mass", "yes"], n_boot=0)
    assert m["overall"]["exact_match"] == 0.75 and m["overall"]["lenient_accuracy"] == 1.0
    assert "lenient" in m["scoring"]["lenient_accuracy"]


def _pathvqa(tmp_path):
    root = tmp_path / "pathvqa"
    (root / "qas" / "test").mkdir(parents=True)
    answers = ["Yes", "no", "The nucleus", "two", "a granuloma", "Fibrosis.", "None", "yes",
               "mitotic figures, apoptosis", "1,000"]  # fmt: skip
    rows = [{"image": f"test_{i:04d}", "question": f"Q{i}?", "answer": a}
            for i, a in enumerate(answers)]  # fmt: skip
    (root / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps(rows))
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return str(root)


@pytest.mark.parametrize(
    ("dataset", "splits"),
    [("vqa_rad", ("train", "test")), ("slake", ("train", "val", "test")), ("pathvqa", ("test",))],
)
def test_gold_vocabulary_entry_scores_100_percent(
    dataset, splits, vqa_rad_dir, slake_dir, tmp_path
):
    """Closed-world vocabulary (train+val+test, as M3AE builds it); the predictor answers each
    question's vocabulary entry: 100.0 % exact match and lenient, overall / open / closed."""
    root = {"vqa_rad": str(vqa_rad_dir), "slake": str(slake_dir)}.get(dataset) or _pathvqa(tmp_path)
    per_split = {s: load_split(dataset, s, root) for s in splits}
    vocab = AnswerVocab.build((it.answer for v in per_split.values() for it in v), "closed-world")
    test = per_split[splits[-1]]
    preds = [vocab.answers[vocab.index(it.answer)] for it in test]
    m = score(test, preds, set(vocab.answers), n_boot=0)
    for part in ("overall", "open", "closed"):
        assert m[part]["exact_match"] == 1.0, part
        assert m[part]["lenient_accuracy"] == 1.0 and m[part]["f1"] == 1.0
    assert m["overall"]["n"] == len(test) and m["out_of_vocabulary"]["overall"] == 0


def _items(answers, kinds):
    return [QAItem(str(i), f"{i}.png", "q?", published_answer(a), a, k, "T", "t")
            for i, (a, k) in enumerate(zip(answers, kinds))]  # fmt: skip


ANSWERS = st.sampled_from(["yes", "no", "Two", "the liver", "left lung", "a mass", "2", "Y"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(ANSWERS, st.booleans()), min_size=1, max_size=30), st.randoms())
def test_vqa_metric_properties(rows, rnd):
    """Perfect predictor: 100 % on every headline number of every subset; a constant predictor:
    the rate of its answer among the gold answers; permuting the questions changes nothing."""
    items = _items([a for a, _ in rows], ["CLOSED" if c else "OPEN" for _, c in rows])
    perfect = score(items, [it.answer for it in items], n_boot=0)
    for part in ("overall", "open", "closed"):
        if perfect[part]["n"]:
            assert all(perfect[part][k] == 1.0 for k in HEADLINES), part
    const = items[0].answer
    m = score(items, [const] * len(items), n_boot=0)
    rate = np.mean([it.answer == const for it in items])
    assert m["overall"]["exact_match"] == pytest.approx(rate)
    lenient_rate = np.mean([it.lenient_answer == lenient_answer(const) for it in items])
    assert m["overall"]["lenient_accuracy"] == pytest.approx(lenient_rate)
    preds = [rnd.choice([it.answer, const, None]) for it in items]
    order = list(range(len(items)))
    rnd.shuffle(order)
    a = score(items, preds, n_boot=0)
    b = score([items[i] for i in order], [preds[i] for i in order], n_boot=0)
    for part in ("overall", "open", "closed"):
        for k in HEADLINES:
            assert a[part].get(k) == pytest.approx(b[part].get(k)), (part, k)
