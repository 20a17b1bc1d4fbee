"""Resume exactness: a run SIGKILLed after step k, resumed, reproduces the uninterrupted losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import biomedclip
from tests.train.conftest import REPO, cli_env, read_metrics, run_cli, tiny_config, write_config

STEPS = 10


def _losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.slow  # three training processes, ~40 s on 2 cores
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, shapes_data):
    # dropout, augmentation, shuffling and a dataloader worker are all active
    sections = dict(
        data={"workers": 1},
        train={"steps": STEPS, "global_batch_size": 16},
        output={"save_every": 2, "keep_last": 2},
    )
    base_cfg = write_config(
        tmp_path / "a.yaml", tiny_config(tmp_path / "a", shapes_data["train"], **sections)
    )
    run_cfg = write_config(
        tmp_path / "b.yaml", tiny_config(tmp_path / "b", shapes_data["train"], **sections)
    )

    proc = run_cli(["train", str(base_cfg)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    reference = _losses(read_metrics(tmp_path / "a" / "metrics.jsonl"))
    assert sorted(reference) == list(range(1, STEPS + 1))

    # the interrupted run: SIGKILL as soon as the step-4 checkpoint is announced
    p = subprocess.Popen(
        [sys.executable, "-m", "biomedclip.cli.main", "train", str(run_cfg)],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # progress is logged to stderr
        text=True,
        start_new_session=True,
    )
    killed = False
    deadline = time.monotonic() + 180
    try:
        for line in p.stderr:
            if "saved checkpoint" in line and "step_00000004" in line:
                os.killpg(p.pid, signal.SIGKILL)
                killed = True
                break
            assert time.monotonic() < deadline, "interrupted run took too long"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert killed and p.returncode == -signal.SIGKILL
    n_before = len(read_metrics(tmp_path / "b" / "metrics.jsonl"))

    proc = run_cli(["train", str(run_cfg)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.startswith(f"trained {STEPS} steps: final loss ")  # the summary line only
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    assert "resumed from" in proc.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    k = summary["resumed_from_step"]
    assert k is not None and 4 <= k < STEPS, summary
    resumed = _losses(read_metrics(tmp_path / "b" / "metrics.jsonl")[n_before:])
    assert sorted(resumed) == list(range(k + 1, STEPS + 1))
    for step, loss in resumed.items():
        assert abs(loss - reference[step]) <= 1e-6, (step, loss, reference[step])

    # only the last K checkpoints are kept, each loadable with biomedclip.load
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == [f"step_{STEPS - 2:08d}", f"step_{STEPS:08d}"]
    model, _, tok = biomedclip.load(str(tmp_path / "b" / "checkpoints" / ckpts[-1]))
    final, _, _ = biomedclip.load(str(tmp_path / "a" / "final"))
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), final.state_dict().items()):
        assert k1 == k2 and (v1 - v2).abs().max() <= 1e-6, k1
