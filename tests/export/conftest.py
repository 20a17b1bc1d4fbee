"""Export tests at the full architecture (random weights): one model, built and saved once.

The model is seeded ViT-B/16 + PubMedBERT with the released tokenizer; the real inputs are the
hub's nine example images and 100 VQA-RAD test questions. Each format is exported once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import build_full_size_model, shared_path

N_PROMPTS = 100


@pytest.fixture(scope="session")
def full_model(hub_dir):
    """The released architecture with seeded random weights and the released tokenizer."""
    return build_full_size_model(hub_dir)


@pytest.fixture(scope="session")
def full_model_dir(full_model, tmp_path_factory) -> Path:
    """``full_model`` saved once (safetensors + config + tokenizer): the exports' SOURCE."""
    return full_model.save_pretrained(tmp_path_factory.mktemp("full") / "model")


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    """100 distinct real prompts: VQA-RAD test questions."""
    data = json.loads(shared_path("vqa_rad", "testset.json").read_text())
    questions = list(dict.fromkeys(item["question"] for item in data))
    assert len(questions) >= N_PROMPTS
    return questions[:N_PROMPTS]


@pytest.fixture(scope="session")
def example_pils(example_images):
    from biomedclip.imaging import load_image

    return [load_image(p, mode=None) for p in example_images]  # as the engine reads them


@pytest.fixture(scope="session")
def reference(full_model, example_images, prompts) -> dict[str, np.ndarray]:
    """The project's fp32 unit embeddings of the example images and prompts (the engine)."""
    from biomedclip.embedding import Encoder, EncoderSettings

    enc = Encoder(full_model, settings=EncoderSettings(num_workers=0))
    images, texts = enc.encode_images(example_images), enc.encode_texts(prompts)
    assert not images.failures and not texts.failures
    return {"images": images.per_input()[0], "texts": texts.per_input()[0]}


def export_once(tmp_path_factory, fmt: str, source, **kwargs):
    from biomedclip.export import export

    out = tmp_path_factory.mktemp(f"export_{fmt}") / "out"
    return export(fmt, source, out, **kwargs)


def unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def assert_equal_embeddings(ours: np.ndarray, theirs: np.ndarray, atol: float = 1e-5) -> None:
    a, b = unit(ours), unit(theirs)
    assert a.shape == b.shape
    diff = np.abs(a - b).max()
    assert diff <= atol, f"max |difference| {diff:.2e} > {atol}"
