"""VQA datasets: VQA-RAD, SLAKE (English) and generic JSON / JSONL / CSV question-answer files.

Every loader returns :class:`QAItem` rows with the answer already normalised. Splits:

* VQA-RAD (``trainset.json`` / ``testset.json``, images in ``images/``): 3,064 train / 451 test,
  the split of the published results; no validation split.
* SLAKE (``train.json`` / ``validation.json`` / ``test.json``, images in ``imgs/``), English
  questions only (``q_lang == "en"``): 4,919 / 1,053 / 1,061.
* Files: rows with ``image``, ``question``, ``answer`` and optional ``answer_type``
  (CLOSED / OPEN; inferred as CLOSED for yes/no answers when absent) and ``question_type``.
  Relative image paths are resolved against ``root`` (default: the file's folder).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError, InputError
from biomedclip.vqa.answers import normalize_answer

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class QAItem:
    """One question about one image; ``answer`` is normalised, ``raw_answer`` as stored."""

    qid: str
    image: str
    question: str
    answer: str
    raw_answer: str
    answer_type: str  # "CLOSED" or "OPEN"
    question_type: str
    dataset: str


def _answer_type(value: Any, answer: str) -> str:
    if value is None or str(value).strip() == "":
        return "CLOSED" if answer in ("yes", "no") else "OPEN"
    kind = str(value).strip().upper()
    if kind not in ("CLOSED", "OPEN"):
        raise InputError(f"answer_type {value!r}: expected CLOSED or OPEN")
    return kind


def _item(row: dict[str, Any], image: Path, qid: str, dataset: str, qtype: Any) -> QAItem:
    question = str(row.get("question") or "").strip()
    if not question:
        raise InputError(f"question {qid} of {dataset}: empty question")
    raw = row.get("answer")
    if raw is None:
        raise InputError(f"question {qid} of {dataset}: no answer")
    answer = normalize_answer(raw)
    return QAItem(
        qid=str(qid),
        image=str(image),
        question=question,
        answer=answer,
        raw_answer=str(raw),
        answer_type=_answer_type(row.get("answer_type"), answer),
        question_type=str(qtype or "").strip().upper() or "UNKNOWN",
        dataset=dataset,
    )


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: question file not found") from e
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e})") from e
    if isinstance(data, dict):
        data = data.get("data") or data.get("questions") or data.get("annotations")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of question records")
    return data


def load_vqa_rad(root: str | Path, split: str) -> list[QAItem]:
    """VQA-RAD ``train`` (3,064) or ``test`` (451)."""
    root = Path(root)
    files = {"train": "trainset.json", "test": "testset.json"}
    if split not in files:
        raise ConfigError(f"VQA-RAD has splits train and test, not {split!r}")
    return [
        _item(r, root / "images" / r["image_name"], r["qid"], "vqa_rad", r.get("question_type"))
        for r in _read_json(root / files[split])
    ]


def load_slake(root: str | Path, split: str, language: str = "en") -> list[QAItem]:
    """SLAKE ``train`` / ``val`` / ``test`` questions in ``language``."""
    root = Path(root)
    files = {"train": "train.json", "val": "validation.json", "test": "test.json"}
    if split not in files:
        raise ConfigError(f"SLAKE has splits train, val and test, not {split!r}")
    rows = [r for r in _read_json(root / files[split]) if r.get("q_lang", "en") == language]
    return [
        _item(
            r,
            root / "imgs" / r["img_name" if "img_name" in r else "image"],
            r.get("qid", f"{split}-{i}"),
            "slake",
            r.get("content_type"),
        )
        for i, r in enumerate(rows)
    ]


def load_file(path: str | Path, root: str | Path | None = None) -> list[QAItem]:
    """A generic ``.json`` / ``.jsonl`` / ``.csv`` / ``.tsv`` question file."""
    path = Path(path)
    if path.suffix in (".csv", ".tsv"):
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: question file not found") from e
    elif path.suffix in (".json", ".jsonl"):
        rows = _read_json(path)
    else:
        raise ConfigError(f"{path}: question files are .json, .jsonl, .csv or .tsv")
    base = Path(root) if root else path.parent
    items = []
    for i, r in enumerate(rows):
        if not r.get("image"):
            raise InputError(f"{path}: row {i} has no image")
        image = Path(r["image"])
        items.append(
            _item(
                r,
                image if image.is_absolute() else base / image,
                r.get("qid") or f"{path.stem}-{i}",
                path.stem,
                r.get("question_type"),
            )
        )
    return items


def load_split(dataset: str, split: str, root: str | None = None, file: str | None = None):
    """Questions of one split: ``dataset`` is ``vqa_rad``, ``slake`` or ``files`` (then ``file``)."""
    if dataset == "vqa_rad":
        return load_vqa_rad(_need(root, "vqa_rad"), split)
    if dataset == "slake":
        return load_slake(_need(root, "slake"), split)
    if dataset == "files":
        if not file:
            raise ConfigError(f"data.{split}: a question file is needed with dataset 'files'")
        return load_file(file, root)
    raise ConfigError(f"data.dataset {dataset!r}: use vqa_rad, slake or files")


def available_splits(dataset: str, files: dict[str, str | None]) -> list[str]:
    if dataset == "vqa_rad":
        return ["train", "test"]
    if dataset == "slake":
        return list(SPLITS)
    return [s for s in SPLITS if files.get(s)]


def _need(root: str | None, name: str) -> str:
    if not root:
        raise ConfigError(f"data.root: the {name} folder is needed")
    if not Path(root).is_dir():
        raise ConfigError(f"data.root {root}: not a folder")
    return root
