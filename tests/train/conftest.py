"""Fixtures of the training tests: a tiny drawn-shapes dataset and config writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> dict[str, str]:
    """Small train / val shard sets of the drawn-shapes dataset."""
    from biomedclip.train.shapes import ensure_dataset

    d = tmp_path_factory.mktemp("shapes")
    train, val = ensure_dataset(d, n_train=512, n_val=64, seed=0, image_size=32, per_shard=128)
    return {"train": train, "val": val, "dir": str(d)}


def tiny_config(out_dir: Path, train_data: str | None, **sections) -> dict:
    """A tiny CPU training config (dict) with the given section overrides merged in."""
    cfg = {
        "model": {"init": "scratch", "preset": "tiny", "tokenizer": "shapes"},
        "data": {"train": train_data, "workers": 0, "shuffle_buffer": 64},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "weight_decay": 0.05},
        "train": {"global_batch_size": 16, "steps": 6, "precision": "fp32", "device": "cpu"},
        "output": {"dir": str(out_dir), "save_every": 2, "log_every": 1, "tensorboard": False},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "biomedclip.cli.main", *args],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
