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
    """A tiny model trained from scratch on the built-in drawn shapes (a short configs/tiny_cpu.yaml
    run), its summary (the trainer's own validation), and its validation shards."""
    import json

    from tests.train.conftest import run_cli, tiny_config, write_config

    tmp = tmp_path_factory.mktemp("shapes_run")
    cfg = tiny_config(
        tmp / "run",
        "",
        model={
            "init": "scratch",
            "preset": "tiny",
            "tokenizer": "shapes",
            "overrides": {
                "text.bert.hidden_dropout_prob": 0.0,
                "text.bert.attention_probs_dropout_prob": 0.0,
            },
        },
        data={
            "train": None,
            "workers": 0,
            "shuffle_buffer": 500,
            "shapes": {"n_train": 4000, "n_val": 240, "samples_per_shard": 1000},
        },
        optim={"lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.05},
        train={"steps": 250, "global_batch_size": 64},
        output={
            "save_every": 250,
            "log_every": 50,
            "tensorboard": False,
            "zeroshot_labels": None,
        },  # fmt: skip
    )
    from biomedclip.train.shapes import LABELS

    cfg["output"]["zeroshot_labels"] = list(LABELS)
    proc = run_cli(["train", str(write_config(tmp / "c.yaml", cfg))], timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp / "run"
    summary = json.loads((run / "summary.json").read_text())
    return {
        "model": run / "final",
        "summary": summary,
        "val": sorted((run / "shapes_data").glob("val-*.tar")),
    }
