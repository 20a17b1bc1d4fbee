"""The paper's zero-shot protocol per dataset: class names, prompt templates, headline metric,
the split, and the published numbers (BiomedCLIP, Zhang et al., NEJM AI 2024).

Class names and templates are Supp. Table 10 of the paper's Supplementary Appendix, verbatim;
results are Supp. Table 5 (224 px). Each dataset's class names are given as a mapping from the
adapter's class (folder / label name) to the paper's name, so the order of the prompts always
follows the adapter's label order whatever order the supplement lists them in. Templates are
averaged per class as the mean of the normalised text embeddings (renormalised), as in open_clip.

``protocol_deviations`` says where a run's protocol differs from the paper's (prompts, split,
metric); the report prints "ours - paper" only where there is none. Custom names and templates
load from files as in clip_benchmark (:func:`load_classnames`, :func:`load_templates`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.prompts import TEMPLATE_SETS

SOURCE = "Zhang et al., NEJM AI 2024, Supp. Table 10 (prompts) and Supp. Table 5 (results)"


@dataclass(frozen=True)
class PaperDataset:
    """How the paper evaluates one dataset."""

    name: str
    title: str
    names: Mapping[str, str]  # adapter class -> the paper's class name (Supp. Table 10)
    templates: tuple[str, ...]  # Supp. Table 10
    metric: str  # "acc1" or "auroc"
    paper: float  # Supp. Table 5, 224 px, in %
    paper_384: float  # Supp. Table 5, 384 px, in %
    # the paper's split when we can use the same one; else why ours differs
    split_note: str | None = None
    paper_order: tuple[str, ...] = field(default=())  # class names in the supplement's order

    @property
    def classnames(self) -> tuple[str, ...]:
        """The paper's names in the adapter's class order (see :meth:`prompt_names`)."""
        return tuple(self.names.values())

    def prompt_names(self, adapter_classes: Sequence[str]) -> list[str]:
        """The paper's names for ``adapter_classes`` (explicit mapping, never positional)."""
        missing = [c for c in adapter_classes if c not in self.names]
        if missing:
            raise InputError(
                f"{self.name}: classes {missing} have no Supp. Table 10 name "
                f"(known: {sorted(self.names)})"
            )
        return [self.names[c] for c in adapter_classes]


_HASH_SPLIT = (
    "the paper's test split is not published; ours is a seeded, stratified 70/10/20 split "
    "grouped so near-duplicates stay together"
)

PAPER_DATASETS: dict[str, PaperDataset] = {
    d.name: d
    for d in (
        PaperDataset(
            "pcam",
            "PCam",
            {"normal": "normal lymph node", "tumor": "lymph node metastasis"},
            ("this is an image of {}", "{} presented in image"),
            "acc1",
            73.41,
            67.15,
            None,  # the official test split (32,768 patches)
            ("normal lymph node", "lymph node metastasis"),
        ),
        PaperDataset(
            "lc25000_lung",
            "LC25000 (lung)",
            {
                "lung_aca": "lung adenocarcinomas",
                "lung_n": "normal lung tissue",
                "lung_scc": "lung squamous cell carcinomas",
            },
            ("this is an image of {}", "{} presented in image"),
            "acc1",
            65.23,
            61.80,
            _HASH_SPLIT,
            ("lung adenocarcinomas", "normal lung tissue", "lung squamous cell carcinomas"),
        ),
        PaperDataset(
            "lc25000_colon",
            "LC25000 (colon)",
            {"colon_aca": "colon adenocarcinomas", "colon_n": "normal colonic tissue"},
            ("a photo of {}", "{} presented in image"),
            "acc1",
            92.98,
            87.42,
            _HASH_SPLIT,
            ("colon adenocarcinomas", "normal colonic tissue"),
        ),
        PaperDataset(
            "tcga_til",
            "TCGA-TIL",
            {"til-negative": "none", "til-positive": "tumor infiltrating lymphocytes"},
            ("a photo of {}", "{} presented in image"),
            "auroc",
            67.04,
            57.00,
            _HASH_SPLIT.replace("near-duplicates", "patients (TCGA barcode) and near-duplicates"),
            ("none", "tumor infiltrating lymphocytes"),
        ),
        PaperDataset(
            "rsna_pneumonia",
            "RSNA Pneumonia",
            {"normal": "normal lung", "pneumonia": "pneumonia"},
            ("a photo of {}", "{} presented in image"),
            "acc1",
            78.95,
            78.49,
            "the challenge's test labels were never released; ours is a seeded, stratified "
            "70/10/20 split of the labelled training patients",
            ("normal lung", "pneumonia"),
        ),
    )
}
PAPER_MEAN = 75.52


def protocol_deviations(
    dataset: str,
    classnames: Sequence[str] | None,
    templates: Sequence[str] | None,
    metric: str | None = None,
    adapter_classes: Sequence[str] | None = None,
) -> list[str]:
    """How a zero-shot run on ``dataset`` differs from the paper's protocol (empty: the same).

    ``classnames`` / ``templates``: the prompts used; ``metric``: the headline metric reported.
    """
    spec = PAPER_DATASETS.get(dataset)
    if spec is None:
        return ["not a dataset of the paper"]
    out = []
    expected = (
        spec.prompt_names(adapter_classes) if adapter_classes is not None else spec.classnames
    )
    if classnames is not None and list(classnames) != list(expected):
        out.append(f"class names: {list(classnames)} instead of Supp. Table 10's {list(expected)}")
    if templates is not None and list(templates) != list(spec.templates):
        out.append(
            f"templates: {list(templates)} instead of Supp. Table 10's {list(spec.templates)}"
        )
    if spec.split_note:
        out.append(f"split: {spec.split_note}")
    if metric is not None and metric != spec.metric:
        out.append(f"metric: {metric} instead of {spec.metric}")
    return out


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
