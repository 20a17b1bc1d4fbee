"""The built wheel and sdist carry the package data (issue 18: the bundled tokenizer files).

Built with setuptools' PEP 517 backend, no isolation and no network, from a copy of the sources
(so nothing is written into the checkout).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.packaging.scan import REPO

# every package-data file that must ship (relative to src/)
REQUIRED = (
    "biomedclip/py.typed",
    "biomedclip/assets/pubmedbert/vocab.txt",
    "biomedclip/assets/pubmedbert/tokenizer.json",
    "biomedclip/assets/pubmedbert/NOTICE.md",
    "biomedclip/export/hf_template/modeling_biomedclip.py",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, list[str]]:
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    tree = tmp_path_factory.mktemp("tree")
    out = tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import json, sys, setuptools.build_meta as b\n"
        "out = sys.argv[1]\n"
        "print(json.dumps([b.build_wheel(out), b.build_sdist(out)]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    wheel, sdist = json.loads(run.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(out / wheel) as z:
        wheel_names = z.namelist()
    with tarfile.open(out / sdist) as t:
        sdist_names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    return {"wheel": wheel_names, "sdist": sdist_names}


def test_the_wheel_ships_the_package_data(built):
    missing = [f for f in REQUIRED if f not in built["wheel"]]
    assert not missing, f"not in the wheel: {missing}"


def test_the_sdist_ships_the_package_data(built):
    missing = [f for f in REQUIRED if f"src/{f}" not in built["sdist"]]
    assert not missing, f"not in the sdist: {missing}"


def test_the_hf_template_exists():
    assert (REPO / "src" / REQUIRED[-1]).is_file()
