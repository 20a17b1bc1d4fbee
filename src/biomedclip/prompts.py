"""Zero-shot labels and prompt templates: parsing and the named template sets.

A small module below both :mod:`biomedclip.zeroshot` and the encoding engine
(:meth:`biomedclip.embedding.Encoder.classifier`), so neither imports the other for it; it imports
nothing but :mod:`biomedclip.errors`. :mod:`biomedclip.zeroshot` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Sequence

from biomedclip.errors import InputError

# The model card's prompt (the official example notebook's expected outputs use it).
MODEL_CARD_TEMPLATES = ("this is a photo of {}",)
# The prompt ensemble of the BiomedCLIP paper's zero-shot evaluation.
PAPER_TEMPLATES = ("this is an image of {}", "{} presented in image", "a photo of {}")
TEMPLATE_SETS = {"model-card": MODEL_CARD_TEMPLATES, "paper": PAPER_TEMPLATES}

__all__ = [
    "MODEL_CARD_TEMPLATES",
    "PAPER_TEMPLATES",
    "TEMPLATE_SETS",
    "parse_labels",
    "resolve_templates",
]


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """Labels from a list or a comma-separated string; refuses empty, blank or duplicate labels."""
    if isinstance(labels, str):
        labels = labels.split(",")
    out = [str(label).strip() for label in labels]
    if not out:
        raise InputError("no labels given: pass at least one label")
    for i, label in enumerate(out):
        if not label:
            raise InputError(f"label #{i + 1} is empty (labels: {list(labels)!r})")
    dupes = sorted({label for label in out if out.count(label) > 1})
    if dupes:
        raise InputError(f"duplicate labels: {dupes}")
    return out


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """A template-set name (``model-card``, ``paper``), one template, or a list of templates."""
    if templates is None:
        return MODEL_CARD_TEMPLATES
    if isinstance(templates, str):
        templates = TEMPLATE_SETS.get(templates, (templates,))
    out = tuple(templates)
    if not out:
        raise InputError("no templates given")
    for t in out:
        if "{}" not in t:
            raise InputError(f"template {t!r} has no '{{}}' placeholder for the label")
    return out
