"""The paper's zero-shot protocol per dataset: class names, prompt templates, headline metric,
and the published numbers (BiomedCLIP, Zhang et al. 2024, Supp. Table 5, 224 px).

Templates: the paper's prompt ensemble (:data:`biomedclip.prompts.PAPER_TEMPLATES`), averaged as
the mean of normalised text embeddings per class. Class names: the paper's supplementary material
could not be consulted offline when this was written, so the names below are our choice: the
diagnostic phrase a PubMed caption would use for each class (the paper's dataset descriptions),
kept short because the prompts wrap them in a sentence. Where results differ from Supp. Table 5,
these names are the first thing to revisit; any run can override them with ``--classnames``.
Custom names and templates load from files as in clip_benchmark (:func:`load_classnames`,
:func:`load_templates`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.prompts import PAPER_TEMPLATES, TEMPLATE_SETS


@dataclass(frozen=True)
class PaperDataset:
    """How the paper evaluates one dataset."""

    name: str
    title: str
    classnames: tuple[str, ...]  # prompt names, in the adapter's class order
    metric: str  # "acc1" or "auroc"
    paper: float  # Supp. Table 5, in %
    templates: tuple[str, ...] = PAPER_TEMPLATES
    split: str = "test"


PAPER_DATASETS: dict[str, PaperDataset] = {
    d.name: d
    for d in (
        PaperDataset(
            "pcam",
            "PCam",
            ("normal lymph node tissue", "lymph node metastasis"),
            "acc1",
            73.41,
        ),
        PaperDataset(
            "lc25000_lung",
            "LC25000 (lung)",
            ("lung adenocarcinoma", "benign lung tissue", "lung squamous cell carcinoma"),
            "acc1",
            65.23,
        ),
        PaperDataset(
            "lc25000_colon",
            "LC25000 (colon)",
            ("colon adenocarcinoma", "benign colonic tissue"),
            "acc1",
            92.98,
        ),
        PaperDataset(
            "tcga_til",
            "TCGA-TIL",
            ("tissue without lymphocytes", "tumor infiltrating lymphocytes"),
            "auroc",
            67.04,
        ),
        PaperDataset(
            "rsna_pneumonia",
            "RSNA Pneumonia",
            ("normal chest x-ray", "pneumonia chest x-ray"),
            "acc1",
            78.95,
        ),
    )
}
PAPER_MEAN = 75.52


def default_classnames(classes: Sequence[str]) -> list[str]:
    """Prompt names for a dataset the paper does not cover: folder/label names made readable."""
    return [c.replace("_", " ").replace("-", " ").strip().lower() for c in classes]


def _read_list(path: Path, dataset: str | None) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        if isinstance(obj, dict):
            if dataset is None or dataset not in obj:
                raise InputError(f"{path}: no entry for dataset {dataset!r} (has {sorted(obj)})")
            obj = obj[dataset]
        if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
            raise InputError(f"{path}: expected a list of strings")
        return [x.strip() for x in obj]
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_classnames(path: str | Path, n_classes: int, dataset: str | None = None) -> list[str]:
    """Class names from a text file (one a line) or JSON (a list, or ``{dataset: list}``)."""
    names = _read_list(Path(path), dataset)
    if len(names) != n_classes:
        raise InputError(f"{path}: {len(names)} class names for {n_classes} classes")
    return names


def load_templates(spec: str | Path, dataset: str | None = None) -> tuple[str, ...]:
    """A template-set name (``paper``, ``model-card``) or a file of templates with ``{}``
    (``{c}`` as clip_benchmark writes them is accepted)."""
    if str(spec) in TEMPLATE_SETS:
        return tuple(TEMPLATE_SETS[str(spec)])
    temps = [t.replace("{c}", "{}") for t in _read_list(Path(spec), dataset)]
    for t in temps:
        if "{}" not in t:
            raise InputError(f"{spec}: template {t!r} has no '{{}}' placeholder")
    if not temps:
        raise InputError(f"{spec}: no templates")
    return tuple(temps)
