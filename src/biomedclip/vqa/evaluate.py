"""``biomedclip vqa eval``: score a saved VQA model on a split and write JSON + Markdown reports."""

from __future__ import annotations

from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_write_json, atomic_write_text
from biomedclip.vqa.data import load_split
from biomedclip.vqa.metrics import PUBLISHED, markdown_report, score
from biomedclip.vqa.model import load_vqa_model
from biomedclip.vqa.predict import predict


def evaluate_vqa(
    model_dir: str | Path,
    dataset: str,
    split: str = "test",
    root: str | None = None,
    file: str | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 0,
    n_boot: int = 1000,
    progress: bool = False,
) -> dict:
    """Predict every question of ``split`` and score it; writes ``report.json`` / ``report.md``
    (and ``predictions.jsonl``) into ``out_dir`` when given. Returns the report."""
    model, preprocess, tokenizer = load_vqa_model(model_dir, device)
    items = load_split(dataset, split, root, file)
    answers, failures = predict(
        model, tokenizer, preprocess, items, batch_size, cache_dir, workers, 3, progress=progress
    )
    preds = [a.best if a is not None else None for a in answers]
    if items and all(p is None for p in preds):
        first = items[0].image
        why = failures.get(first) if isinstance(failures, dict) else None
        raise InputError(
            f"no image of the {len(items)} questions could be read; first tried: {first}"
            + (f" ({why})" if why else "")
        )
    metrics = score(items, preds, set(model.vocab.answers), n_boot=n_boot)
    report = {
        "model": str(model_dir),
        "dataset": dataset,
        "split": split,
        "vocabulary": model.vocab.source,
        "n_answers": len(model.vocab),
        "metrics": metrics,
        "published": PUBLISHED.get(dataset),
        "unreadable_images": failures,
    }
    if out_dir is not None:
        import json

        out = Path(out_dir)
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", markdown_report(report))
        rows = [
            json.dumps(
                {
                    "qid": it.qid,
                    "question": it.question,
                    "answer": it.answer,
                    "answer_type": it.answer_type,
                    "question_type": it.question_type,
                    "prediction": p,
                    "top": a.to_dict()["answers"] if a else None,
                }
            )
            for it, p, a in zip(items, preds, answers)
        ]
        atomic_write_text(out / "predictions.jsonl", "\n".join(rows) + "\n")
    return report
