"""Visual question answering on BiomedCLIP: METER / M3AE co-attention fusion over the towers.

``biomedclip vqa train|eval|ask``; in Python::

    from biomedclip.vqa import load_vqa_model, ask
    model, preprocess, tokenizer = load_vqa_model("runs/vqa_rad/final")
    ask(model, preprocess, tokenizer, "scan.dcm", "Is there a fracture?").answers
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AnswerVocab": "biomedclip.vqa.answers",
    "normalize_answer": "biomedclip.vqa.answers",
    "published_answer": "biomedclip.vqa.answers",
    "lenient_answer": "biomedclip.vqa.answers",
    "QAItem": "biomedclip.vqa.data",
    "load_split": "biomedclip.vqa.data",
    "VQAConfig": "biomedclip.vqa.config",
    "load_vqa_config": "biomedclip.vqa.config",
    "VQAModel": "biomedclip.vqa.model",
    "load_vqa_model": "biomedclip.vqa.model",
    "ask": "biomedclip.vqa.predict",
    "predict": "biomedclip.vqa.predict",
    "score": "biomedclip.vqa.metrics",
    "train_vqa": "biomedclip.vqa.trainer",
    "evaluate_vqa": "biomedclip.vqa.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'biomedclip.vqa' has no attribute {name!r}")
