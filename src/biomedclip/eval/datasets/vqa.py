"""SLAKE and VQA-RAD turned into image classification sets (one label per image).

* ``slake_modality``: SLAKE's per-question ``modality`` field (CT, MRI, X-Ray); one image has
  one modality.
* ``slake_organ``: SLAKE has no organ field in its English json, so the body region is taken from
  the answers to its body-region questions ("Which part of the body does this image belong
  to?", "Which organ system is imaged?", ...); "Brain" is merged into "Head". Images whose
  questions never name the region are left out (counted in the set's notes).
* ``vqa_rad_organ``: VQA-RAD's ``image_organ`` (HEAD, CHEST, ABD).

SLAKE's train / validation / test json files share no image, so they are the splits. Every
VQA-RAD test image also appears in its training questions, so its images get
:func:`~.base.hash_split` instead.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from biomedclip.errors import InputError
from biomedclip.eval.datasets.base import LabelledSet, require_dir, require_file, split_set

SLAKE_SPLITS = {"train": "train", "val": "validation", "test": "test"}
SLAKE_REGION_QUESTIONS = (
    "which part of the body does this image belong to?",
    "which organ system is imaged?",
    "where does the image represent in the body?",
)
SLAKE_REGION_NAMES = {
    "chest": "chest",
    "abdomen": "abdomen",
    "head": "head",
    "brain": "head",
    "neck": "neck",
    "pelvic cavity": "pelvic cavity",
}
VQA_RAD_ORGANS = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}


def _load_json(path: Path, dataset: str) -> list[dict]:
    require_file(path, dataset)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"{dataset}: {path} is not valid JSON ({e})") from e
    if not isinstance(rows, list):
        raise InputError(f"{dataset}: {path} should hold a list of questions")
    return rows


def _base(data_root: Path, folder: str) -> Path:
    return data_root / folder if (data_root / folder).is_dir() else data_root


SLAKE_MODALITIES = ("CT", "MRI", "X-Ray")


def _build(name, split, classes, per_image: dict[str, str], image_dir: Path, notes: list[str]):
    """Fixed ``classes`` for every split (a split may lack a rare class)."""
    classes = list(classes)
    unknown = sorted(set(per_image.values()) - set(classes))
    if unknown:
        raise InputError(f"{name}: unexpected label(s) {unknown} (known: {classes})")
    index = {c: i for i, c in enumerate(classes)}
    ids = sorted(per_image)
    labels = np.asarray([index[per_image[i]] for i in ids], np.int64)
    paths = [image_dir / i for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{name}: expected file {missing[0]} not found ({len(missing)} missing)")
    return LabelledSet(name, split, classes, ids, labels, paths, root=image_dir, notes=notes)


def slake(data_root: str | Path, field: str = "modality", split: str = "test") -> LabelledSet:
    """SLAKE as a ``modality`` or ``organ`` (body region) classification set."""
    if field not in ("modality", "organ"):
        raise InputError(f"slake: field {field!r}: use modality or organ")
    base = _base(Path(data_root), "slake")
    splits = list(SLAKE_SPLITS) if split == "all" else [split]
    if any(s not in SLAKE_SPLITS for s in splits):
        raise InputError(f"slake: unknown split {split!r} (use train, val, test or all)")
    per_image: dict[str, str] = {}
    votes: dict[str, Counter] = {}
    for s in splits:
        for row in _load_json(base / f"{SLAKE_SPLITS[s]}.json", "slake"):
            if row.get("q_lang", "en") != "en":
                continue
            image = row["image"]
            if field == "modality":
                per_image[image] = str(row["modality"]).strip()
                continue
            votes.setdefault(image, Counter())
            if str(row.get("question", "")).strip().lower() in SLAKE_REGION_QUESTIONS:
                region = SLAKE_REGION_NAMES.get(str(row.get("answer", "")).strip().lower())
                if region:
                    votes[image][region] += 1
    notes = []
    if field == "organ":
        per_image = {i: v.most_common(1)[0][0] for i, v in votes.items() if v}
        left = len(votes) - len(per_image)
        notes.append(f"{left} image(s) without a body-region answer left out")
    name = f"slake_{field}"
    classes = SLAKE_MODALITIES if field == "modality" else sorted(set(SLAKE_REGION_NAMES.values()))
    return _build(name, split, classes, per_image, require_dir(base / "imgs", name), notes)


def vqa_rad_organ(data_root: str | Path, split: str = "test", seed: int = 0) -> LabelledSet:
    """VQA-RAD images labelled by ``image_organ`` (head / chest / abdomen)."""
    base = _base(Path(data_root), "vqa_rad")
    per_image: dict[str, str] = {}
    for fname in ("trainset.json", "testset.json"):
        for row in _load_json(base / fname, "vqa_rad"):
            organ = VQA_RAD_ORGANS.get(str(row.get("image_organ", "")).strip().upper())
            if organ is None:
                raise InputError(f"vqa_rad: {fname} qid {row.get('qid')}: unknown image_organ")
            per_image[row["image_name"]] = organ
    full = _build(
        "vqa_rad_organ",
        "all",
        sorted(VQA_RAD_ORGANS.values()),
        per_image,
        require_dir(base / "images", "vqa_rad"),
        [],
    )
    return split_set(full, split, seed)
