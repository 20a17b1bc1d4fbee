"""Fixtures of the evaluation tests: a tiny random model behind the encoding engine."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    import biomedclip
    from biomedclip.embedding import Encoder, EncoderSettings

    model, preprocess, tokenizer = biomedclip.load(tiny_model_dir)
    return Encoder(model, preprocess, tokenizer, EncoderSettings(batch_size=32, num_workers=0))


@pytest.fixture(scope="session")
def shapes_model(tmp_path_factory):
    """A tiny model trained from scratch on the built-in drawn shapes: configs/tiny_cpu.yaml cut to
    250 steps on 4,000 drawings; its summary (the trainer's own validation) and val shards."""
    import json

    import yaml

    from tests.train.conftest import REPO, run_cli, write_config

    tmp = tmp_path_factory.mktemp("shapes_run")
    cfg = yaml.safe_load((REPO / "configs" / "tiny_cpu.yaml").read_text())
    cfg["data"].update(workers=0)
    cfg["data"]["shapes"].update(n_train=4000, n_val=240, samples_per_shard=1000)
    cfg["train"]["steps"] = 250
    cfg["output"].update(dir=str(tmp / "run"), save_every=250, eval_every=0, tensorboard=False)
    proc = run_cli(["train", str(write_config(tmp / "c.yaml", cfg))], timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp / "run"
    return {
        "model": run / "final",
        "summary": json.loads((run / "summary.json").read_text()),
        "val": sorted((run / "shapes_data").glob("val-*.tar")),
    }
