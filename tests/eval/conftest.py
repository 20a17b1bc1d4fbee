"""Fixtures of the evaluation tests: a tiny random model behind the encoding engine (the trained
shapes model is the session-wide `shapes_run` of tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    import biomedclip
    from biomedclip.embedding import Encoder, EncoderSettings

    model, preprocess, tokenizer = biomedclip.load(tiny_model_dir)
    return Encoder(model, preprocess, tokenizer, EncoderSettings(batch_size=32, num_workers=0))
