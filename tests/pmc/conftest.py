"""Fixtures of the PMC pipeline tests: real articles as packages, local HTTP mirrors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pmc_helpers import Mirror, shared_path


@pytest.fixture(scope="session")
def nxml_dir() -> Path:
    return shared_path("pmc", "nxml")


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return shared_path("biomedclip_hub")


@pytest.fixture(scope="session")
def real_packages(nxml_dir) -> dict[str, bytes]:
    """The 8 real articles as PMC-style tar.gz packages (images in jpg/png/gif/tif)."""
    from benchmarks._pmc_corpus import real_corpus

    return real_corpus(nxml_dir, fmt_cycle=("jpg", "png", "gif", "tif"))


@pytest.fixture()
def mirror_factory(tmp_path):
    mirrors: list[Mirror] = []

    def make(packages: dict[str, bytes], rows: dict | None = None) -> Mirror:
        from benchmarks._pmc_corpus import write_mirror

        root = tmp_path / f"mirror{len(mirrors)}"
        root.mkdir()
        write_mirror(root, packages, rows)
        m = Mirror(root)
        mirrors.append(m)
        return m

    yield make
    for m in mirrors:
        m.close()
