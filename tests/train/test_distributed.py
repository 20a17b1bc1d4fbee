"""Sharded loss: 2 gloo processes x batch B == 1 process x batch 2B (loss and gradients)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train._ddp_worker import VARIANTS, compute, fixed_batch, tiny_model
from tests.train.conftest import REPO, cli_env, read_metrics, write_config

B = 4


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    init_file = out / "pg_init"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.train._ddp_worker",
                str(r),
                "2",
                str(init_file),
                str(out),
                str(B),
            ],
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    return out


@pytest.mark.parametrize("name,kw,micro", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_two_processes_equal_one_process(two_rank_results, name, kw, micro):
    torch.set_num_threads(1)
    got = load_file(str(two_rank_results / f"{name}.safetensors"))
    model = tiny_model()
    loss = compute(model, fixed_batch(2 * B), local_loss=False, micro=None)  # reference: 1 x 2B
    assert abs(float(got["loss"]) - float(loss)) <= 1e-5, (float(got["loss"]), float(loss))
    n = 0
    for k, p in model.named_parameters():
        if p.grad is None:
            continue
        g = got[f"grad.{k}"]
        assert torch.allclose(g, p.grad, atol=1e-5, rtol=0), (k, (g - p.grad).abs().max())
        n += 1
    assert n > 20  # every tower contributed gradients


@pytest.mark.slow
def test_torchrun_two_processes_cli(tmp_path, shapes_data):
    """The README's example: torchrun --nproc_per_node 2 ... train (gloo on CPU)."""
    from tests.train.conftest import tiny_config

    cfg = tiny_config(
        tmp_path / "run",
        shapes_data["train"],
        data={"val": shapes_data["val"], "workers": 1},
        train={"steps": 4, "global_batch_size": 16},
        output={"save_every": 4},
    )
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            "-m",
            "biomedclip.cli.main",
            "train",
            str(path),
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert "val_image_to_text_R@1" in summary
    steps = [m["step"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert steps == [1, 2, 3, 4]
