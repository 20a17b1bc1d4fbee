"""What ``biomedclip train`` prints: progress on stderr (logging), only the summary on stdout, and
set-up errors through the CLI's error handler (no traceback)."""

from __future__ import annotations

import json

import torch

from biomedclip.cli.main import main
from tests.train.conftest import run_cli, tiny_config, write_config


def test_cuda_without_a_gpu_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "out", "unused.tar"))
    assert main(["train", str(cfg), "--set", "train.device=cuda"]) == 2
    err = capsys.readouterr().err
    assert "train.device is 'cuda' but CUDA is not available" in err
    assert "Traceback" not in err


def test_stdout_holds_only_the_summary(tmp_path, shapes_data):
    cfg = tiny_config(
        tmp_path / "out",
        shapes_data["train"],
        data={"val": shapes_data["val"], "max_val_samples": 32},
        train={"steps": 2},
        output={"save_every": 1, "eval_every": 1},
    )
    proc = run_cli(["train", str(write_config(tmp_path / "c.yaml", cfg)), "--json"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # nothing else on stdout
    assert summary["steps"] == 2 and summary["final_model"].endswith("final")
    assert summary == json.loads((tmp_path / "out" / "summary.json").read_text())
    for line in ("training ", "step 1/2", "eval step 1:", "saved checkpoint", "done: 2 steps"):
        assert line in proc.stderr, (line, proc.stderr[-2000:])
