"""A static scan of the package's imports (``ast``), for the packaging tests.

Every ``import`` statement of every module under ``src/biomedclip`` is listed with where it sits:
at module level or inside a function, under ``if TYPE_CHECKING:``, or inside a ``try`` whose
handler catches ``ImportError`` (an optional import with a fallback).
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "src" / "biomedclip"
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str  # absolute dotted name ("biomedclip.train.data", "pandas", "tomllib")
    names: tuple[str, ...]  # for ``from m import a, b``; () for ``import m``
    in_function: bool
    optional: bool  # inside ``try: ... except ImportError``
    type_checking: bool

    @property
    def top(self) -> str:
        return self.module.split(".", 1)[0]

    @property
    def where(self) -> str:
        file = self.file.relative_to(REPO) if self.file.is_relative_to(REPO) else self.file
        return f"{file}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    names = t.elts if isinstance(t, ast.Tuple) else [t] if t is not None else []
    return handler.type is None or any(
        isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[Import]:
    """Every import of one module, with its context."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.is_relative_to(PACKAGE_DIR) else "outside"
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, optional: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(
                    Import(path, node.lineno, alias.name, (), in_function, optional, type_checking)
                )
            return
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                return
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            found.append(
                Import(path, node.lineno, base, names, in_function, optional, type_checking)
            )
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, optional, True)
            for child in node.orelse:
                visit(child, in_function, optional, type_checking)
            return
        if isinstance(node, ast.Try | getattr(ast, "TryStar", ast.Try)):
            guarded = any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, in_function, optional or guarded, type_checking)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, in_function, optional, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, in_function, optional, type_checking)

    visit(tree, False, False, False)
    return found


def all_imports() -> dict[str, list[Import]]:
    """Module name -> its imports, for every module of the package."""
    return {module_name(p): imports_of(p) for p in package_files()}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement (``ray[data]>=2.9`` -> ``ray``)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert name, requirement
    return normalise(name.group(1))


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()
