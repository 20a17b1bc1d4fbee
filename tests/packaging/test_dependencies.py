"""Declared dependencies match the imports (issue 9): a static check that CI runs with the tests.

Each extra, installed alone on top of the core package, must import all of its modules. Installing
every extra in a fresh venv would take minutes (torch), so the check is static: every import of
every module is mapped to its distribution with ``importlib.metadata.packages_distributions()`` and
compared with ``pyproject.toml``'s core dependencies plus the module's extra(s) from
:data:`MODULE_EXTRAS`. Imports inside ``try: ... except ImportError`` (optional, with a fallback or
a clear error) and under ``if TYPE_CHECKING:`` are exempt; imports of other ``biomedclip`` modules
at module level must not need an extra the importing module does not have (imports inside functions
are feature gates: the imported module is checked under its own extra).
"""

from __future__ import annotations

import importlib.metadata
import sys
from functools import cache

import pytest

from tests.packaging.scan import Import, all_imports, normalise, pyproject, requirement_name

# Sub-packages and modules that need an extra (longest prefix wins; everything else is core).
# A new optional dependency goes into an extra in pyproject.toml and its modules are listed here.
MODULE_EXTRAS: dict[str, tuple[str, ...]] = {
    "biomedclip.index": ("index",),
    "biomedclip.pmc": ("pmc",),
    "biomedclip.pmc.ray_engine": ("pmc", "ray"),
    "biomedclip.train": ("train",),
    "biomedclip.embedding.ray_engine": ("ray",),
    "biomedclip.embedding.onnx_backend": ("onnx",),
    "biomedclip.embedding.openvino_backend": ("cpu-fast",),
    "biomedclip.eval": ("eval",),
    "biomedclip.eval.pairs": (),  # core: read by the PMC pipeline and retrieval evaluation
    "biomedclip.eval.retrieval": (),
    "biomedclip.eval.retrieval_eval": (),
    "biomedclip.eval.bootstrap": (),  # NumPy only: also the VQA report's intervals
    "biomedclip.eval.coop": ("eval", "baselines"),  # CoOp through an open_clip baseline too
    "biomedclip.serve": ("serve",),
    "biomedclip.serve.ray_app": ("serve", "ray"),
    "biomedclip.vqa": ("train",),  # built on the training infrastructure
    "biomedclip.slide": ("slide",),
    "biomedclip.slide.ray_extract": ("slide", "ray"),
}
# Declared distributions that are used without being imported by name (with the reason).
RUNTIME_ONLY = {
    "pylibjpeg": "the decoder framework pydicom uses for compressed pixel data",
    "pylibjpeg-libjpeg": "JPEG decoder plugin found by pydicom through pylibjpeg",
    "pylibjpeg-openjpeg": "JPEG 2000 decoder plugin found by pydicom through pylibjpeg",
    "pylibjpeg-rle": "RLE decoder plugin found by pydicom through pylibjpeg",
    "openslide-bin": "the OpenSlide C library that openslide-python loads",
    "onnxscript": "needed by torch.onnx.export (the dynamo exporter)",
    "tensorboard": "used through torch.utils.tensorboard",
    "torchvision": "timm and the transforms need it at runtime",
    "python-multipart": "FastAPI's form and file-upload parser (FastAPI imports it)",
}
NOT_CHECKED_EXTRAS = {"dev"}  # tools and test-only packages, never imported by the package


def extras_of(module: str) -> tuple[str, ...]:
    best = ""
    for prefix in MODULE_EXTRAS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return MODULE_EXTRAS.get(best, ())


@cache
def declared() -> dict[str, set[str]]:
    """``{"": core distributions, extra: its distributions}`` (normalised names)."""
    project = pyproject()["project"]
    out = {"": {requirement_name(r) for r in project["dependencies"]}}
    for extra, reqs in project["optional-dependencies"].items():
        out[extra] = {requirement_name(r) for r in reqs if not r.startswith("biomedclip")}
    return out


@cache
def import_to_dists() -> dict[str, set[str]]:
    return {
        top: {normalise(d) for d in dists}
        for top, dists in importlib.metadata.packages_distributions().items()
    }


def allowed(module: str) -> set[str]:
    out = set(declared()[""])
    for extra in extras_of(module):
        assert extra in declared(), f"{module}: extra {extra!r} is not in pyproject.toml"
        out |= declared()[extra]
    return out


def is_third_party(imp: Import) -> bool:
    return imp.top != "biomedclip" and imp.top not in sys.stdlib_module_names and bool(imp.top)


def problems(imports: dict[str, list[Import]]) -> list[str]:
    """Imports not covered by the declared dependencies, and module-level cross-extra imports."""
    found = []
    for module, imps in imports.items():
        ok = allowed(module)
        for imp in imps:
            if imp.optional or imp.type_checking:
                continue
            if is_third_party(imp):
                dists = import_to_dists().get(imp.top)
                if not dists:
                    found.append(f"{imp.where}: {imp.top} is not installed, so it is not declared")
                elif not dists & ok:
                    need = " or ".join(sorted(dists))
                    extras = ", ".join(extras_of(module)) or "none"
                    found.append(
                        f"{imp.where}: imports {imp.top} ({need}), which is not a core dependency "
                        f"nor in the module's extra(s) ({extras}); declare it or list the module "
                        "in MODULE_EXTRAS"
                    )
            elif imp.top == "biomedclip" and not imp.in_function:
                targets = [imp.module] + [f"{imp.module}.{n}" for n in imp.names]
                need = {e for t in targets if t in imports for e in extras_of(t)}
                need |= set(extras_of(imp.module))
                missing = need - set(extras_of(module))
                if missing:
                    found.append(
                        f"{imp.where}: module-level import of {imp.module} needs the "
                        f"{', '.join(sorted(missing))} extra, which {module} does not declare"
                    )
    return found


def unused(imports: dict[str, list[Import]]) -> list[str]:
    """Declared distributions that no module of their group imports (and not runtime-only)."""
    used: dict[str, set[str]] = {}
    optional: set[str] = set()  # guarded imports: how core modules use an extra when present
    for module, imps in imports.items():
        for imp in imps:
            if not is_third_party(imp):
                continue
            dists = import_to_dists().get(imp.top, set())
            for group in ("", *extras_of(module)):
                used.setdefault(group, set()).update(dists)
            if imp.optional:
                optional |= dists
    core_used = set().union(*used.values())  # a core dependency may be used by any module
    found = []
    for group, dists in declared().items():
        if group in NOT_CHECKED_EXTRAS:
            continue
        seen = core_used if group == "" else used.get(group, set()) | optional
        for dist in sorted(dists - seen - set(RUNTIME_ONLY)):
            where = f"extra {group!r}" if group else "core dependencies"
            found.append(f"{dist} is declared in the {where} but no module there imports it")
    return found


def test_every_import_is_declared():
    found = problems(all_imports())
    assert not found, "\n".join(found)


def test_every_declared_dependency_is_used():
    found = unused(all_imports())
    assert not found, "\n".join(found)


def test_the_check_catches_an_undeclared_import(tmp_path):
    """The check itself can fail: pandas in a train module, a core module importing pmc."""
    from tests.packaging.scan import imports_of

    (tmp_path / "data.py").write_text("def f():\n    import pandas\n")
    (tmp_path / "opt.py").write_text("try:\n    import pandas\nexcept ImportError:\n    pass\n")
    (tmp_path / "core.py").write_text("from biomedclip.pmc.jats import parse_article\n")
    scanned = {
        name: imports_of(tmp_path / f"{stem}.py")
        for name, stem in (
            ("biomedclip.train.data", "data"),
            ("biomedclip.train.opt", "opt"),
            ("biomedclip.core", "core"),
        )
    }
    if not import_to_dists().get("pandas"):
        pytest.skip("pandas not installed")
    found = problems(scanned)
    assert any("imports pandas" in f and "data.py" in f for f in found), found
    assert not any("opt.py" in f for f in found), found
    assert any("needs the pmc extra" in f for f in found), found
