"""Issue 18: what stays import-light, checked in fresh interpreters (``sys.modules`` after import).

* ``biomedclip --help`` and every ``biomedclip CMD ... --help``: no NumPy, Pillow or torch (the
  parsers take their constants from tiny modules; heavy imports live in the ``run`` functions).
  ``benchmarks/cli_start.py`` measures the start-up time itself.
* ``biomedclip.index`` (FAISS search) and ``biomedclip.onnx`` (the ONNX runner): no torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "numpy", "PIL", "transformers", "pyarrow", "rich")


def loaded_after(code: str) -> list[str]:
    """The modules of :data:`HEAVY` loaded after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_main_imports_no_numpy_pil_or_torch():
    assert loaded_after("import biomedclip.cli.main") == []


def test_every_help_imports_no_numpy_pil_or_torch():
    """Builds the parser and prints the help of every (nested) command in one interpreter."""
    code = """
import argparse, contextlib, io
from biomedclip.cli.main import build_parser, main

def commands(parser, path=()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))

paths = list(commands(build_parser()))
assert len(paths) > 20, paths
for path in paths:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([*path, "--help"])
        except SystemExit as e:
            assert e.code == 0, (path, e.code)
    assert "usage:" in out.getvalue(), path
"""
    assert loaded_after(code) == []


@pytest.mark.parametrize(
    "code",
    [
        "import biomedclip.index",
        "from biomedclip.index import VectorIndex, build_index, Searcher, IndexSpec",
        "import biomedclip.onnx",
        "from biomedclip.onnx import OnnxBiomedCLIP, TextTokenizer, preprocess_batch",
    ],
)
def test_torch_free_packages(code):
    loaded = loaded_after(code)
    assert "torch" not in loaded, f"{code!r} imports torch"
    assert "transformers" not in loaded, f"{code!r} imports transformers"


@pytest.mark.parametrize(
    "code",
    ["import biomedclip", "import biomedclip.prompts", "import biomedclip.imaging.constants"],
)
def test_light_modules(code):
    assert loaded_after(code) == []
