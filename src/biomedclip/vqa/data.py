"""VQA datasets: VQA-RAD, SLAKE (English) and generic JSON / JSONL / CSV question-answer files.

Every loader returns :class:`QAItem` rows; ``answer`` is the published normalisation
(:func:`~biomedclip.vqa.answers.published_answer`, the vocabulary's form). Splits:

* VQA-RAD (``trainset.json`` / ``testset.json``, images in ``images/``), in the two splits in
  common use: ``vqa_rad`` 3,064 train / 451 test (the MEVF split of METER, M3AE, PubMedCLIP and
  the BiomedCLIP paper's VQA results); ``vqa_rad_hf`` 1,793 train / 451 test (the Hugging Face
  ``flaviagiammarino/vqa-rad`` release used by generative Med-VQA papers: the same test
  questions; training keeps the free-form and paraphrased questions - ``phrase_type`` not
  ``frame`` - deduplicated by (image, question, answer) and without any test triple). Neither
  has a validation split.
* PathVQA (He et al. 2020) in its public layouts: the release's pickles
  ``qas/{train,val,test}/{split}_qa.pkl`` (rows ``image`` = ``train_0422``, ``question``,
  ``answer``) with images ``images/{split}/<image>.jpg``, or JSON / JSONL files
  (``{split}.json``, ``pathvqa_{split}.json``, ``qas/{split}.json`` ...) whose ``image`` may
  be a relative path with either separator (``images\\test\\test_0001.jpg``). yes/no answers are
  CLOSED, the rest OPEN (its own convention) unless the row says otherwise. Pickles are read
  with a loader that refuses anything but plain lists, dicts, strings and numbers.
* SLAKE (``train.json`` / ``validation.json`` / ``test.json``, images in ``imgs/``), English
  questions only (``q_lang == "en"``): 4,919 / 1,053 / 1,061.
* Files: rows with ``image`` (or ``image_path`` / ``img_name`` / ``path``; ``/`` or ``\\``
  separators), ``question``, ``answer`` and optional ``answer_type``
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
from biomedclip.vqa.answers import lenient_answer, normalize_answer, published_answer

SPLITS = ("train", "val", "test")
DATASETS = ("vqa_rad", "vqa_rad_hf", "slake", "pathvqa", "files")
IMAGE_COLUMNS = ("image", "image_path", "img_name", "path")


@dataclass(frozen=True)
class QAItem:
    """One question about one image; ``answer`` is the published normalisation of
    ``raw_answer`` (as stored): the vocabulary entry and the exact-match form."""

    qid: str
    image: str
    question: str
    answer: str
    raw_answer: str
    answer_type: str  # "CLOSED" or "OPEN"
    question_type: str
    dataset: str

    @property
    def lenient_answer(self) -> str:
        """The lenient form: :func:`~biomedclip.vqa.answers.lenient_answer`."""
        return lenient_answer(self.raw_answer)


def _answer_type(value: Any, answer: str) -> str:
    if value is None or str(value).strip() == "":
        return "CLOSED" if normalize_answer(answer) in ("yes", "no") else "OPEN"
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
    answer = published_answer(raw)
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


def load_vqa_rad_hf(root: str | Path, split: str) -> list[QAItem]:
    """VQA-RAD in the Hugging Face release's split: 1,793 train / 451 test (see the module doc)."""
    test = load_vqa_rad(root, "test")
    if split == "test":
        return test
    if split != "train":
        raise ConfigError(f"VQA-RAD has splits train and test, not {split!r}")
    raw = _read_json(Path(root) / "trainset.json")

    def key(it: QAItem) -> tuple[str, str, str]:
        return (Path(it.image).name, it.question.strip().lower(), it.raw_answer.strip().lower())

    seen = {key(it) for it in test}
    out = []
    for r, it in zip(raw, load_vqa_rad(root, "train")):
        if str(r.get("phrase_type", "")).strip().lower() == "frame" or key(it) in seen:
            continue
        seen.add(key(it))
        out.append(it)
    return out


PATHVQA_FILES = (
    "qas/{s}/{s}_qa.pkl", "qas/{s}_qa.pkl", "{s}_qa.pkl", "qas/{s}.json", "{s}.json",
    "pathvqa_{s}.json", "qas/{s}.jsonl", "{s}.jsonl", "pathvqa_{s}.jsonl",
)  # fmt: skip


class _PlainUnpickler:
    """Unpickle plain data only (no classes, no functions): the PathVQA release's lists of dicts."""

    @staticmethod
    def load(path: Path):
        import pickle

        class Plain(pickle.Unpickler):
            def find_class(self, module, name):
                raise ConfigError(f"{path}: refusing to unpickle {module}.{name} (plain data only)")

        with open(path, "rb") as f:
            return Plain(f).load()


def _image_path(value: Any, base: Path, default_dir: Path | None = None) -> Path:
    """A row's image: a path with either separator, relative to ``base`` unless absolute; a bare
    name (no separator) is looked up in ``default_dir`` (``.jpg`` added when it has no suffix)."""
    text = str(value).strip().replace("\\", "/")
    p = Path(text)
    if p.is_absolute():
        return p
    if "/" not in text and default_dir is not None:
        return default_dir / (text if p.suffix else text + ".jpg")
    return base / p


def load_pathvqa(root: str | Path, split: str) -> list[QAItem]:
    """PathVQA ``train`` / ``val`` / ``test`` from its pickles or JSON files."""
    root = Path(root)
    if split not in SPLITS:
        raise ConfigError(f"PathVQA has splits train, val and test, not {split!r}")
    candidates = [root / f.format(s=split) for f in PATHVQA_FILES]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigError(f"pathvqa: no question file for {split!r} (looked for {candidates[0]}, "
                          f"{candidates[4]} ...)")  # fmt: skip
    rows = _PlainUnpickler.load(path) if path.suffix == ".pkl" else _read_json(path)
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a list of question records")
    items = []
    for i, r in enumerate(rows):
        image = r.get("image") or r.get("image_path") or r.get("img_name") or r.get("img_id")
        if not image:
            raise InputError(f"{path}: row {i} has no image")
        items.append(
            _item(r, _image_path(image, root, root / "images" / split),
                  r.get("qid") or r.get("id") or f"{split}-{i}", "pathvqa", r.get("question_type"))
        )  # fmt: skip
    return items


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
        image = next((r.get(c) for c in IMAGE_COLUMNS if r.get(c)), None)
        if not image:
            raise InputError(f"{path}: row {i} has no image ({' / '.join(IMAGE_COLUMNS)})")
        items.append(
            _item(
                r,
                _image_path(image, base),
                r.get("qid") or f"{path.stem}-{i}",
                path.stem,
                r.get("question_type"),
            )
        )
    return items


def load_split(dataset: str, split: str, root: str | None = None, file: str | None = None):
    """Questions of one split: ``dataset`` is one of :data:`DATASETS` (``files``: ``file``)."""
    if dataset == "vqa_rad":
        return load_vqa_rad(_need(root, "vqa_rad"), split)
    if dataset == "vqa_rad_hf":
        return load_vqa_rad_hf(_need(root, "vqa_rad"), split)
    if dataset == "pathvqa":
        return load_pathvqa(_need(root, "pathvqa"), split)
    if dataset == "slake":
        return load_slake(_need(root, "slake"), split)
    if dataset == "files":
        if not file:
            raise ConfigError(f"data.{split}: a question file is needed with dataset 'files'")
        return load_file(file, root)
    raise ConfigError(f"data.dataset {dataset!r}: use {', '.join(DATASETS)}")


def available_splits(dataset: str, files: dict[str, str | None]) -> list[str]:
    if dataset in ("vqa_rad", "vqa_rad_hf"):
        return ["train", "test"]
    if dataset in ("slake", "pathvqa"):
        return list(SPLITS)
    return [s for s in SPLITS if files.get(s)]


def _need(root: str | None, name: str) -> str:
    if not root:
        raise ConfigError(f"data.root: the {name} folder is needed")
    if not Path(root).is_dir():
        raise ConfigError(f"data.root {root}: not a folder")
    return root
