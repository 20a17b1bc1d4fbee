"""Issue 24: templates are data, not code. The grammar (literal text, one bare ``{}``), prompts
built as ``prefix + label + suffix`` with their lengths known first, and the CLI refusing a bad
template before it loads a model."""

from __future__ import annotations

import tracemalloc

import pytest

from biomedclip import prompts
from biomedclip.errors import InputError
from biomedclip.prompts import (
    PromptTooLongError,
    TemplateError,
    build_prompts,
    check_prompts,
    parse_template,
    resolve_templates,
)

ACCEPTED = [
    "this is a photo of {}",
    "{}",
    "{} presented in image",
    "{{}} literal braces, then {}",
    "{:}",  # an empty spec is the bare placeholder (Formatter cannot tell them apart)
    "a {} {{b}} c",
]
REFUSED = [
    "{{}}{0:>30000000}",  # issue 24: passes "'{}' in t" and a 300-character limit
    "{0}",
    "{name}",
    "{} and {name}",
    "{!r}",
    "{:>9}",
    "{:{}}",
    "{.__class__}",
    "{[0]}",
    "{}{}",
    "no placeholder",
    "{{}}",
    "{",
    "}",
    "a {} }",
]


@pytest.mark.parametrize("template", ACCEPTED)
def test_accepted_templates_build_what_str_format_builds(template):
    for label in ("pneumonia", "a {0} label with {braces}", ""):
        assert parse_template(template).fill(label) == template.format(label)
        assert parse_template(template).length(label) == len(template.format(label))


@pytest.mark.parametrize("template", REFUSED)
def test_refused_templates_name_the_template(template):
    with pytest.raises(TemplateError) as e:
        resolve_templates([template])
    assert repr(template) in str(e.value)
    assert isinstance(e.value, InputError)  # the CLI's error path (exit 2)


def test_format_spec_template_builds_nothing():
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match="only a bare"):
            build_prompts(["a", "b"], ["{{}}{0:>30000000}"] * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak


def test_prompt_length_is_checked_before_any_prompt_is_built(monkeypatch):
    def boom(self, label):
        raise AssertionError("a prompt was built")

    monkeypatch.setattr(prompts.Template, "fill", boom)
    with pytest.raises(PromptTooLongError, match="would have 104 characters, the limit is 100"):
        build_prompts(["ok", "x" * 100], ["{}", "a {} b"], max_chars=100)
    assert len(check_prompts(["ok"], "paper", max_chars=100)) == 3


def test_prompts_are_label_major():
    assert build_prompts(["x", "y"], ["{{}} {}", "b {}."]) == ["{} x", "b x.", "{} y", "b y."]
    assert build_prompts(["x"], None) == ["this is a photo of x"]


def test_cli_refuses_a_bad_template_before_loading_a_model(capsys, tmp_path):
    from biomedclip.cli.main import main

    argv = ["classify", str(tmp_path / "x.png"), "--labels", "a,b", "--model", str(tmp_path)]
    assert main([*argv, "--template", "{{}}{0:>30000000}"]) == 2
    err = capsys.readouterr().err
    assert "'{{}}{0:>30000000}'" in err and "only a bare '{}'" in err
