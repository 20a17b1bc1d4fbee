"""The declared Python versions are the ones the code runs on (issue 9).

``requires-python`` gives the oldest supported version; nothing in the package may use a standard
library module, name or syntax that is newer, and ruff's ``target-version`` says the same version.
"""

from __future__ import annotations

import ast
import re
import sys

import pytest

from tests.packaging.scan import imports_of, package_files, pyproject

# Standard-library modules and names added after 3.10 (the "New in version" notes of the docs).
NEW_MODULES = {
    "tomllib": (3, 11),
    "wsgiref.types": (3, 11),
    "annotationlib": (3, 14),
    "compression": (3, 14),
    "string.templatelib": (3, 14),
    "concurrent.interpreters": (3, 14),
}
NEW_NAMES = {
    "datetime": {"UTC": (3, 11)},
    "typing": {
        **dict.fromkeys(
            (
                "Self",
                "LiteralString",
                "Never",
                "assert_never",
                "assert_type",
                "reveal_type",
                "Required",
                "NotRequired",
                "TypeVarTuple",
                "Unpack",
                "dataclass_transform",
            ),
            (3, 11),
        ),
        "override": (3, 12),
        "TypeAliasType": (3, 12),
        "ReadOnly": (3, 13),
        "TypeIs": (3, 13),
    },
    "enum": {"StrEnum": (3, 11), "verify": (3, 11), "ReprEnum": (3, 11)},
    "asyncio": {"TaskGroup": (3, 11), "timeout": (3, 11)},
    "hashlib": {"file_digest": (3, 11)},
    "operator": {"call": (3, 11)},
    "itertools": {"batched": (3, 12)},
    "warnings": {"deprecated": (3, 13)},
    "copy": {"replace": (3, 13)},
}


def declared_minimum() -> tuple[int, int]:
    spec = pyproject()["project"]["requires-python"]
    m = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", spec)
    assert m, f"requires-python {spec!r}: expected the form '>=3.X'"
    return int(m.group(1)), int(m.group(2))


def too_new(minimum: tuple[int, int]) -> list[str]:
    """Uses of standard-library modules or names newer than ``minimum``, as ``file:line: what``."""
    found = []
    for path in package_files():
        for imp in imports_of(path):
            if NEW_MODULES.get(imp.module, (0, 0)) > minimum:
                found.append(f"{imp.where}: {imp.module} is new in {NEW_MODULES[imp.module]}")
            for name in imp.names:
                version = NEW_NAMES.get(imp.module, {}).get(name, (0, 0))
                if version > minimum:
                    found.append(f"{imp.where}: {imp.module}.{name} is new in {version}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        plain = {
            a.asname or a.name: a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                module = plain.get(node.value.id)
                version = NEW_NAMES.get(module or "", {}).get(node.attr, (0, 0))
                if version > minimum:
                    found.append(f"{path}:{node.lineno}: {module}.{node.attr} is new in {version}")
    return found


def test_no_standard_library_newer_than_requires_python():
    minimum = declared_minimum()
    found = too_new(minimum)
    assert not found, (
        f"requires-python says {minimum[0]}.{minimum[1]}, but the package uses:\n"
        + "\n".join(found)
    )


def test_the_scan_sees_a_too_new_import(tmp_path, monkeypatch):
    """The check itself can fail: a ``tomllib`` import is reported against 3.10."""
    from tests.packaging import scan

    pkg = tmp_path / "src" / "biomedclip"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text(
        "import datetime\nimport tomllib\nfrom typing import Self\nx = datetime.UTC\n"
    )
    monkeypatch.setattr(scan, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(scan, "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "package_files", scan.package_files)
    found = too_new((3, 10))
    assert len(found) == 3, found
    assert not too_new((3, 11))


def test_syntax_parses_at_the_declared_minimum():
    minimum = declared_minimum()
    for path in package_files():
        try:
            ast.parse(path.read_text(encoding="utf-8"), feature_version=minimum)
        except SyntaxError as e:
            pytest.fail(f"{path}:{e.lineno}: needs a Python newer than {minimum}: {e.msg}")


def test_tools_target_the_declared_minimum():
    minimum = declared_minimum()
    cfg = pyproject()
    assert cfg["tool"]["ruff"]["target-version"] == f"py{minimum[0]}{minimum[1]}"
    assert sys.version_info[:2] >= minimum, "the test environment runs an undeclared Python"
