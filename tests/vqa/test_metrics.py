"""Evaluation arithmetic against a hand-computed fixture."""

from __future__ import annotations

import pytest

from biomedclip.vqa.data import QAItem
from biomedclip.vqa.metrics import (
    majority_baseline,
    markdown_report,
    score,
    token_f1,
)


def qa(answer, kind, qtype, qid="q"):
    return QAItem(qid, "img.png", "question?", answer, answer, kind, qtype, "vqa_rad")


ITEMS = [
    qa("yes", "CLOSED", "PRES"),  # right
    qa("no", "CLOSED", "PRES"),  # wrong
    qa("yes", "CLOSED", "SIZE"),  # no prediction (unreadable image)
    qa("right lung", "OPEN", "POS"),  # right
    qa("left upper lobe", "OPEN", "POS"),  # wrong, F1 0.8
    qa("pancreas", "OPEN", "ORGAN"),  # gold out of vocabulary: wrong
]
PREDS = ["yes", "yes", None, "right lung", "left lobe", "liver"]
VOCAB = {"yes", "no", "right lung", "left upper lobe", "left lobe", "liver"}


def test_token_f1_by_hand():
    # pred {left, lobe}, gold {left, upper, lobe}: precision 2/2, recall 2/3 -> F1 0.8
    assert token_f1("left lobe", "left upper lobe") == pytest.approx(0.8)
    assert token_f1("yes", "yes") == 1.0 and token_f1("no", "yes") == 0.0
    assert token_f1(None, "yes") == 0.0 and token_f1("", "") == 1.0
    assert token_f1("2 2", "2") == pytest.approx(2 * 0.5 * 1 / 1.5)  # multiset overlap


def test_score_by_hand():
    m = score(ITEMS, PREDS, VOCAB, n_boot=500, seed=3)
    assert m["closed"]["n"] == 3 and m["open"]["n"] == 3 and m["overall"]["n"] == 6
    assert m["closed"]["accuracy"] == pytest.approx(1 / 3)
    assert m["closed"]["f1"] == pytest.approx(1 / 3)
    assert m["open"]["accuracy"] == pytest.approx(1 / 3)
    assert m["open"]["f1"] == pytest.approx((1 + 0.8 + 0) / 3)
    assert m["overall"]["accuracy"] == pytest.approx(2 / 6)
    assert m["overall"]["f1"] == pytest.approx(2.8 / 6)
    q = m["per_question_type"]
    assert sorted(q) == ["ORGAN", "POS", "PRES", "SIZE"]
    assert (q["PRES"]["n"], q["PRES"]["accuracy"]) == (2, 0.5)
    assert q["POS"]["f1"] == pytest.approx(0.9) and q["SIZE"]["accuracy"] == 0.0
    assert m["out_of_vocabulary"] == {"overall": 1, "closed": 0, "open": 1}
    assert m["no_prediction"] == 1
    lo, hi = m["overall"]["accuracy_ci95"]
    assert 0.0 <= lo <= 2 / 6 <= hi <= 1.0 and lo < hi
    assert score(ITEMS, PREDS, VOCAB, n_boot=500, seed=3) == m  # seeded: reproducible
    with pytest.raises(ValueError, match="6 questions but 5"):
        score(ITEMS, PREDS[:5])


def test_bootstrap_interval():
    half = [qa("yes", "CLOSED", "PRES")] * 100
    m = score(half, ["yes"] * 50 + ["no"] * 50, n_boot=2000, seed=0)
    lo, hi = m["closed"]["accuracy_ci95"]
    # binomial standard error sqrt(.25/100) = 0.05: the 95 % interval is about 0.40-0.60
    assert 0.38 <= lo <= 0.42 and 0.58 <= hi <= 0.62
    assert score(half[:20], ["yes"] * 20, n_boot=100)["closed"]["accuracy_ci95"] == (1.0, 1.0)
    assert "accuracy" not in score(half[:3], ["yes"] * 3)["open"]  # no open questions


def test_majority_baseline_and_markdown():
    train = [qa("yes", "CLOSED", "PRES"), qa("no", "CLOSED", "PRES"), qa("no", "CLOSED", "PRES")]
    assert majority_baseline(train, ITEMS, "CLOSED") == pytest.approx(1 / 3)  # "no" on 1 of 3
    report = {
        "model": "m",
        "dataset": "vqa_rad",
        "split": "test",
        "vocabulary": "train",
        "n_answers": 5,
        "metrics": score(ITEMS, PREDS, VOCAB, n_boot=50),
    }
    md = markdown_report(report)
    assert "| closed | 3 | 33.3 |" in md and "| 79.8 |" in md and "| 67.6 |" in md
    assert "| POS | 2 | 50.0 |" in md and "out of the vocabulary (counted wrong): 1" in md
