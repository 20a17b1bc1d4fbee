"""Slide tests: the full-size random-weight model and the shared LC25000 patch features.

Each distinct source patch is encoded once per test run at full size (some CPUs here embed about
one image per second), and every slide's features are composed from these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_full_size_model, shared_path

N_TUMOUR, N_NORMAL = 10, 14  # distinct source patches: lung_aca (tumour), lung_n (normal)


@pytest.fixture(scope="session")
def slide_full_model(hub_dir):
    """The released architecture with seeded random weights and the released tokenizer."""
    return build_full_size_model(hub_dir)


@pytest.fixture(scope="session")
def lung_sources() -> dict[str, list[Path]]:
    root = shared_path("lc25000_lung")
    return {
        "tumour": sorted((root / "lung_aca").glob("*.jpeg"))[:N_TUMOUR],
        "normal": sorted((root / "lung_n").glob("*.jpeg"))[:N_NORMAL],
    }


@pytest.fixture(scope="session")
def lung_patch_features(slide_full_model, lung_sources) -> dict[str, np.ndarray]:
    """Full-size unit features of each distinct source patch, through the one engine."""
    from biomedclip.embedding import Encoder

    enc = Encoder(slide_full_model)
    out = {}
    for kind, paths in lung_sources.items():
        e = enc.encode_images([str(p) for p in paths])
        assert not e.failures, e.failures
        out[kind] = e.embeddings.astype(np.float32)
    return out
