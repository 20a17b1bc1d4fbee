"""VQA scores: accuracy (closed / open / overall), token-level F1, per answer and question type,
bootstrap 95 % intervals (:mod:`biomedclip.eval.bootstrap`), and the JSON / Markdown report with the published numbers alongside.

``accuracy`` (the headline, also ``exact_match``) is exact match as the Med-VQA literature scores
it (METER / M3AE: the predicted answer against the gold answer, both in the published
normalisation, METER / ViLT's ``normalize_word`` of the lower-cased answer): the prediction's and
the gold answer's :func:`~biomedclip.vqa.answers.published_answer` forms must be equal, so a
model that always answers the gold answer's vocabulary entry scores 100 %. ``lenient_accuracy``
compares the :func:`~biomedclip.vqa.answers.lenient_answer` forms (also yes/no variants
folded, unicode folded, number words up to twelve) and is reported beside it, labelled
"lenient". Token F1 compares the published forms. A question whose gold answer is
not in the model's vocabulary can never be answered and counts as wrong (the report gives how many
there were); a question whose image could not be read has no prediction and also counts as wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from biomedclip.eval.bootstrap import bootstrap_ci
from biomedclip.vqa.answers import answer_tokens, lenient_answer, published_answer
from biomedclip.vqa.data import QAItem

# BiomedCLIP + METER fine-tuned, as reported in the LLaVA-Med paper (Li et al. 2023, Table 4)
PUBLISHED = {
    "vqa_rad": {"open": 67.6, "closed": 79.8},
    "slake": {"open": 82.05, "closed": 89.7},
}


def token_f1(pred: str | None, gold: str) -> float:
    """F1 of the (multiset) word overlap of two normalised answers; 1.0 when both are empty."""
    p, g = answer_tokens(pred or ""), answer_tokens(gold)
    if not p and not g:
        return 1.0
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _summary(correct: np.ndarray, f1: np.ndarray, n_boot: int, seed: int,
             lenient: np.ndarray | None = None) -> dict:  # fmt: skip
    out: dict = {"n": int(len(correct))}
    if len(correct) == 0:
        return out
    lenient = correct if lenient is None else lenient
    both = np.stack([correct, f1, lenient], -1)  # [n, 3]: resampled together
    ci = bootstrap_ci(
        lambda _, b: {"accuracy": b[..., 0].mean(-1), "f1": b[..., 1].mean(-1),
                      "lenient": b[..., 2].mean(-1)},  # [resamples, n, 3]
        correct,
        both,
        n_boot,
        seed,
    )  # fmt: skip
    nan = (float("nan"), float("nan"))
    out["accuracy"] = float(correct.mean())
    out["accuracy_ci95"] = ci.get("accuracy", nan)
    out["exact_match"] = out["accuracy"]
    out["lenient_accuracy"] = float(lenient.mean())
    out["lenient_accuracy_ci95"] = ci.get("lenient", nan)
    out["f1"] = float(f1.mean())
    out["f1_ci95"] = ci.get("f1", nan)
    return out


def score(
    items: Sequence[QAItem],
    predictions: Sequence[str | None],
    vocabulary: set[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """All scores of ``predictions`` (normalised answers, None = no prediction) against ``items``."""
    if len(items) != len(predictions):
        raise ValueError(f"{len(items)} questions but {len(predictions)} predictions")
    exact = [None if p is None else published_answer(p) for p in predictions]
    correct = np.array(
        [p is not None and p == published_answer(it.raw_answer) for it, p in zip(items, exact)],
        dtype=np.float64,
    )
    lenient = np.array(
        [p is not None and lenient_answer(p) == it.lenient_answer
         for it, p in zip(items, predictions)], dtype=np.float64,
    )  # fmt: skip
    f1 = np.array(
        [token_f1(p, published_answer(it.raw_answer)) for it, p in zip(items, exact)],
        dtype=np.float64,
    )
    kinds = np.array([it.answer_type for it in items])
    qtypes = np.array([it.question_type for it in items])

    def sub(mask):
        return _summary(correct[mask], f1[mask], n_boot, seed, lenient[mask])

    out = {
        "overall": sub(np.ones(len(items), bool)),
        "closed": sub(kinds == "CLOSED"),
        "open": sub(kinds == "OPEN"),
        "per_question_type": {q: sub(qtypes == q) for q in sorted(set(qtypes.tolist()))},
        "scoring": {
            "accuracy": "exact match, the headline: prediction and gold answer both in the "
            "published normalisation (METER / ViLT normalize_word: lower case, punctuation, "
            "number words -> digits, articles dropped)",
            "lenient_accuracy": "lenient (beside it, not comparable to published numbers): also "
            "yes/no variants and unicode folded, number words up to twelve",
        },
        "no_prediction": int(sum(p is None for p in predictions)),
    }
    if vocabulary is not None:
        oov = [it.answer not in vocabulary for it in items]
        out["out_of_vocabulary"] = {
            "overall": int(sum(oov)),
            "closed": int(sum(o for o, k in zip(oov, kinds) if k == "CLOSED")),
            "open": int(sum(o for o, k in zip(oov, kinds) if k == "OPEN")),
        }
    return out


def majority_baseline(train: Sequence[QAItem], test: Sequence[QAItem], kind: str) -> float:
    """Accuracy on ``test``'s ``kind`` questions of always giving train's most frequent ``kind`` answer."""
    answers = Counter(it.answer for it in train if it.answer_type == kind)
    subset = [it for it in test if it.answer_type == kind]
    if not answers or not subset:
        return float("nan")
    best = answers.most_common(1)[0][0]
    return sum(it.answer == best for it in subset) / len(subset)


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def _ci(s: dict, key: str) -> str:
    if key not in s:
        return "-"
    lo, hi = s[key]
    return f"{_pct(lo)}-{_pct(hi)}"


def markdown_report(report: dict) -> str:
    """The report as Markdown: headline table with the published numbers, then question types."""
    m, ds = report["metrics"], report.get("dataset")
    pub = PUBLISHED.get(ds or "", {})
    lines = [
        f"# VQA evaluation: {ds or 'questions'} ({report.get('split', '?')} split)",
        "",
        f"Model: `{report.get('model')}`. Answer vocabulary: {report.get('vocabulary')} "
        f"({report.get('n_answers')} answers). Questions: {m['overall']['n']}; without a "
        f"prediction (unreadable image): {m['no_prediction']}; gold answer out of the vocabulary "
        f"(counted wrong): {m.get('out_of_vocabulary', {}).get('overall', '-')}.",
        "",
        "| subset | n | exact match % | 95 % CI | lenient % | 95 % CI | token F1 % | 95 % CI "
        "| published acc. % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("closed", "open", "overall"):
        s = m[key]
        published = pub.get(key)
        lines.append(
            f"| {key} | {s['n']} | {_pct(s.get('accuracy'))} | {_ci(s, 'accuracy_ci95')} | "
            f"{_pct(s.get('lenient_accuracy'))} | {_ci(s, 'lenient_accuracy_ci95')} | "
            f"{_pct(s.get('f1'))} | {_ci(s, 'f1_ci95')} | "
            f"{published if published is not None else '-'} |"
        )
    lines += [
        "",
        "Exact match (the headline, as METER / M3AE score): predicted and gold answer equal "
        "after the published normalisation of both (METER / ViLT normalize_word: lower case, "
        "punctuation, number words as digits, articles dropped). Lenient (beside it, not "
        "comparable to published numbers): also yes/no variants and unicode folded.",
        "",
        "Published: BiomedCLIP + METER as reported in the LLaVA-Med paper (VQA-RAD open 67.6 / "
        "closed 79.8, SLAKE open 82.05 / closed 89.7); most published numbers use the closed-world "
        "answer vocabulary (train+val+test).",
        "",
        "| question type | n | accuracy % | 95 % CI | token F1 % |",
        "|---|---|---|---|---|",
    ]
    for q, s in m["per_question_type"].items():
        lines.append(
            f"| {q} | {s['n']} | {_pct(s.get('accuracy'))} | {_ci(s, 'accuracy_ci95')} | "
            f"{_pct(s.get('f1'))} |"
        )
    return "\n".join(lines) + "\n"
