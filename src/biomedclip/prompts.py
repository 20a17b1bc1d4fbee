"""Zero-shot labels and prompt templates: parsing, the template grammar and the named sets.

A small module below both :mod:`biomedclip.zeroshot` and the encoding engine
(:meth:`biomedclip.embedding.Encoder.classifier`), so neither imports the other for it; it imports
nothing but :mod:`biomedclip.errors`. :mod:`biomedclip.zeroshot` re-exports the template sets,
:func:`parse_labels` and :func:`resolve_templates`.

Templates are data, not code. The grammar (what :func:`parse_template` accepts): literal text with
exactly one bare ``{}`` placeholder for the label, as :class:`string.Formatter` parses it; ``{{`` and
``}}`` are literal braces. A field name (``{0}``, ``{name}``, ``{.attr}``), a format spec
(``{:>9}``) or a conversion (``{!r}``) is refused with :class:`TemplateError`, so a prompt is
always ``prefix + label + suffix`` and its length is known before it is built.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import NamedTuple

from biomedclip.errors import InputError

# The model card's prompt (the official example notebook's expected outputs use it).
MODEL_CARD_TEMPLATES = ("this is a photo of {}",)
# The prompt ensemble of the BiomedCLIP paper's zero-shot evaluation.
PAPER_TEMPLATES = ("this is an image of {}", "{} presented in image", "a photo of {}")
TEMPLATE_SETS = {"model-card": MODEL_CARD_TEMPLATES, "paper": PAPER_TEMPLATES}
# Far beyond what the text tower reads (256 tokens): longer prompts are refused, not built.
MAX_PROMPT_CHARS = 20_000

__all__ = [
    "MAX_PROMPT_CHARS",
    "MODEL_CARD_TEMPLATES",
    "PAPER_TEMPLATES",
    "TEMPLATE_SETS",
    "PromptTooLongError",
    "Template",
    "TemplateError",
    "build_prompts",
    "check_prompts",
    "parse_labels",
    "parse_template",
    "resolve_templates",
]


class TemplateError(InputError):
    """A prompt template outside the grammar (the service answers 422)."""


class PromptTooLongError(InputError):
    """A prompt would exceed the length limit (the service answers 413); nothing was built."""


class Template(NamedTuple):
    """A parsed template: the prompt of ``label`` is ``prefix + label + suffix``."""

    prefix: str
    suffix: str

    def length(self, label: str) -> int:
        return len(self.prefix) + len(label) + len(self.suffix)

    def fill(self, label: str) -> str:
        return self.prefix + label + self.suffix


def _show(template: str) -> str:
    return repr(template if len(template) <= 80 else template[:77] + "...")


def parse_template(template: str) -> Template:
    """The literal text around the one bare ``{}`` of ``template``, or :class:`TemplateError`
    naming it (see the module docstring for the grammar)."""
    if not isinstance(template, str):
        raise TemplateError(f"template {template!r} is not a string")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:  # a single '{' or '}'
        raise TemplateError(f"template {_show(template)}: {e} (write '{{{{' or '}}}}')") from e
    literal, fields = ["", ""], 0
    for text, field, spec, conversion in parts:
        literal[min(fields, 1)] += text
        if field is None:
            continue
        if field or spec or conversion:
            raise TemplateError(
                f"template {_show(template)}: only a bare '{{}}' is allowed, not a field name, "
                "format spec or conversion ('{0}', '{name}', '{:>9}', '{!r}')"
            )
        fields += 1
    if fields != 1:
        raise TemplateError(
            f"template {_show(template)}: needs exactly one '{{}}' placeholder for the label "
            f"(found {fields})"
        )
    return Template(*literal)


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
    """A template-set name (``model-card``, ``paper``), one template, or a list of templates;
    each is checked against the grammar (:func:`parse_template`)."""
    if templates is None:
        return MODEL_CARD_TEMPLATES
    if isinstance(templates, str):
        templates = TEMPLATE_SETS.get(templates, (templates,))
    out = tuple(templates)
    if not out:
        raise InputError("no templates given")
    for t in out:
        parse_template(t)
    return out


def check_prompts(
    labels: Sequence[str],
    templates: str | Sequence[str] | None,
    max_chars: int = MAX_PROMPT_CHARS,
) -> list[Template]:
    """The parsed templates, once every prompt's length (literal parts + label) is known to be
    within ``max_chars``: else :class:`PromptTooLongError`, and no prompt was built."""
    names = resolve_templates(templates)
    parsed = [parse_template(t) for t in names]
    for label in labels:
        for t, p in zip(names, parsed):
            if p.length(label) > max_chars:
                raise PromptTooLongError(
                    f"template {_show(t)} with label {_show(label)}: the prompt would have "
                    f"{p.length(label)} characters, the limit is {max_chars}"
                )
    return parsed


def build_prompts(
    labels: Sequence[str],
    templates: str | Sequence[str] | None,
    max_chars: int = MAX_PROMPT_CHARS,
) -> list[str]:
    """Label-major prompts (for each label, one per template), as ``Encoder.classifier`` orders
    them, after :func:`check_prompts`."""
    parsed = check_prompts(labels, templates, max_chars)
    return [p.fill(label) for label in labels for p in parsed]
