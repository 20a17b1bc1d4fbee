"""One command-line language: every parser, walked.

No abbreviations; every option a command accepts reaches the code that uses it; one spelling per
idea; the CLI's defaults are the Python API's.
"""

from __future__ import annotations

import argparse
import inspect

import pytest

from biomedclip.cli.main import build_parser, main
from tests.cli.arg_usage import ALL, Package

IGNORED_DESTS = {"help", "version", "verbose", "func", "command"}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every parser, sub-commands included, the root first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


PARSERS = list(walk(build_parser()))
COMMANDS = [(path, p) for path, p in PARSERS if "func" in p._defaults and p._subparsers is None]
IDS = [" ".join(path) for path, _ in COMMANDS]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.dest not in IGNORED_DESTS
        and a.dest != argparse.SUPPRESS
        and not isinstance(a, argparse._SubParsersAction)
    ]


def test_walk_finds_every_command():
    names = set(IDS)
    for expected in ("classify", "embed", "serve", "explain", "eval zeroshot", "index build",
                     "pmc build", "vqa ask", "vqa eval", "train", "search"):  # fmt: skip
        assert expected in names
    assert len(COMMANDS) >= 25


def test_abbreviations_are_off_everywhere():
    for path, parser in PARSERS:
        assert parser.allow_abbrev is False, " ".join(path) or "biomedclip"


def test_a_prefix_is_an_error_that_names_the_real_spelling(capsys):
    with pytest.raises(SystemExit) as e:
        main(["search", "--text", "x", "--index", "idx"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --text" in err
    assert "--text-batch-size" in err
    with pytest.raises(SystemExit):
        main(["eval", "zeroshot", "data", "--templat", "paper"])
    assert "did you mean --templates" in capsys.readouterr().err


_PACKAGE = Package.scan()


def _pmc_config_fields(path, parser) -> set[str]:
    """The ``pmc`` options that change the pipeline's config (read by field name, which the
    static scan cannot follow): each option is set to a value unlike its default, and the
    resulting :class:`BuildConfig` must differ from the default one."""
    import dataclasses

    from biomedclip.cli.pmc import config_from_args

    extra = ["m.jsonl", "--figures", "f"] if path[-1] == "medicat" else []
    base = parser.parse_args(["--out", "x", *extra])
    changed = set()
    for action in options(parser):
        if not action.option_strings or action.dest in ("out", "json", "no_progress"):
            continue
        ns = argparse.Namespace(**vars(base))
        setattr(ns, action.dest, _unlike(action))
        if dataclasses.asdict(config_from_args(ns)) != dataclasses.asdict(config_from_args(base)):
            changed.add(action.dest)
    return changed


def _unlike(action: argparse.Action):
    """A value of the option's type that is not its default."""
    d = action.default
    if action.choices:
        return next(c for c in action.choices if c != d)
    if isinstance(d, bool) or action.nargs == 0:
        return not d
    if isinstance(d, list | tuple):
        return type(d)(["zz-unlike"])
    if isinstance(d, int | float):
        return d + 7
    if action.type in (int, float):
        return action.type(7)
    if action.type is not None and action.type not in (str,):
        try:
            return action.type("2001-02-03")
        except (ValueError, TypeError):
            return action.type("0.5,0.25,0.25")
    return "zz-unlike"


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_every_option_reaches_the_code_that_uses_it(path, parser):
    func = parser._defaults["func"]
    reads = _PACKAGE.reads(func.__module__, func.__name__, _namespace_param(func))
    if path[0] == "pmc":
        reads |= _pmc_config_fields(path, parser)
    assert ALL not in reads, f"{' '.join(path)}: vars(args) hides which options are used"
    unused = ["/".join(a.option_strings) or a.dest for a in options(parser) if a.dest not in reads]
    assert not unused, f"`biomedclip {' '.join(path)}` accepts but never reads {unused}"


def _namespace_param(func) -> str:
    return next(iter(inspect.signature(func).parameters))


FORBIDDEN = {
    "--top": "--top-k",
    "--topk": "--top-k",
    "--k": "--top-k",
    "--dtype": None,  # only as the alias of --precision
}


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_one_spelling_per_idea(path, parser):
    name = " ".join(path)
    for action in options(parser):
        flags = action.option_strings
        for flag in flags:
            if flag in FORBIDDEN and FORBIDDEN[flag]:
                pytest.fail(f"{name}: {flag} is spelled {FORBIDDEN[flag]} everywhere else")
        if "--dtype" in flags:
            assert "--precision" in flags, name
        if "--cache-dir" in flags:  # the hub cache, and nothing else
            assert "hub" in (action.help or ""), f"{name}: --cache-dir is the hub cache"
        if action.dest in ("feature_cache", "cache_dir") and "--cache-dir" not in flags:
            assert flags == ["--feature-cache"], f"{name}: {flags} for a feature cache"
        if action.dest in ("top", "top_k", "topk", "k", "top_n", "n_top"):
            assert flags[0] == "--top-k", f"{name}: {flags}"


def _default(path: str, dest: str):
    for p, parser in COMMANDS:
        if " ".join(p) == path:
            return parser.get_default(dest)
    raise KeyError(path)


def _api_default(func, name: str):
    return inspect.signature(func).parameters[name].default


def test_cli_defaults_are_the_api_defaults():
    from biomedclip.embedding.encoder import EncoderSettings
    from biomedclip.explain import Explainer, explain
    from biomedclip.imaging.options import ReadOptions
    from biomedclip.serve.schemas import ExplainRequest
    from biomedclip.zeroshot import zero_shot

    enc, read = EncoderSettings(), ReadOptions()
    # the encoding engine: every command that declares an option has the engine's default
    for path, parser in COMMANDS:
        name = " ".join(path)
        for dest, expected in (
            ("precision", enc.precision),
            ("backend", enc.backend),
            ("text_batch_size", enc.text_batch_size),
            ("workers", enc.num_workers),
            ("fast_decode", enc.fast_decode),
            ("compile", enc.compile),
            ("slices", read.slices),
            ("plane", read.plane),
            ("tissue_fraction", read.tissue_fraction),
            ("tile_size", read.tile_size),
        ):
            if any(a.dest == dest for a in parser._actions) and path[0] not in ("pmc", "vqa"):
                assert parser.get_default(dest) == expected, f"{name} --{dest}"
    # per-command defaults that have an API twin
    assert _default("classify", "batch_size") == _api_default(zero_shot, "batch_size")
    assert _default("embed", "batch_size") == enc.batch_size
    method = _api_default(explain, "methods")
    assert _api_default(Explainer.explain, "methods") == method
    assert ExplainRequest.model_fields["method"].default == method
    cli_method = _default("explain", "method")
    assert (cli_method or [method]) == [method] or cli_method == method
