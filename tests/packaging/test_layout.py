"""Test support stays out of the installed package, and benchmarks do not import the test suite."""

from __future__ import annotations

from tests.packaging.scan import REPO, imports_of, package_files

TEST_TOOLS = {"pytest", "hypothesis", "tests", "benchmarks"}


def test_the_package_ships_no_test_support():
    found = [str(p.relative_to(REPO)) for p in package_files() if p.stem in ("testing", "conftest")]
    found += [
        f"{imp.where}: imports {imp.module}"
        for p in package_files()
        for imp in imports_of(p)
        if imp.top in TEST_TOOLS
    ]
    assert not found, "test support inside src/biomedclip:\n" + "\n".join(found)


def test_benchmarks_do_not_import_the_test_suite():
    found = [
        f"{imp.where}: imports {imp.module}"
        for p in sorted((REPO / "benchmarks").glob("*.py"))
        for imp in imports_of(p)
        if imp.top == "tests"
    ]
    assert not found, "\n".join(found)
