"""Fixtures of the VQA tests: the shared VQA-RAD / SLAKE folders and tiny VQA configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import shared_path


@pytest.fixture(scope="session")
def vqa_rad_dir() -> Path:
    return shared_path("vqa_rad")


@pytest.fixture(scope="session")
def slake_dir() -> Path:
    return shared_path("slake")


@pytest.fixture(scope="session")
def hub_tokenizer_dir() -> Path:
    return shared_path("biomedclip_hub")


def tiny_vqa_config(out_dir: Path, root: Path, tokenizer: Path, **sections) -> dict:
    """A tiny CPU VQA config on VQA-RAD: random tiny towers, a 1-layer width-64 fusion."""
    cfg = {
        "model": {
            "preset": "tiny",
            "tokenizer": str(tokenizer),
            "fusion": {"layers": 1, "hidden": 64, "heads": 2, "dropout": 0.0},
        },
        "data": {"dataset": "vqa_rad", "root": str(root)},
        "optim": {
            "lr": 1e-3,
            "head_lr_multiplier": 1.0,
            "fusion_lr_multiplier": 1.0,
            "loss": "ce",
            "warmup_fraction": 0.0,
            "weight_decay": 0.0,
        },
        "train": {"global_batch_size": 32, "steps": 4, "device": "cpu", "precision": "fp32"},
        "output": {"dir": str(out_dir), "save_every": 2, "log_every": 1, "tensorboard": False},
    }
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                cfg[section].setdefault(key, {}).update(value)
            else:
                cfg.setdefault(section, {})[key] = value
    return cfg


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
