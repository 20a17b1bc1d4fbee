"""Real learning (tiny model from scratch on drawn shapes) and full-size fine-tuning on real pairs."""

from __future__ import annotations

import json
import resource
import shutil

import numpy as np
import pytest

import biomedclip
from tests.conftest import SHAPES_N_VAL, shared_path
from tests.train.conftest import run_cli, write_config


@pytest.mark.slow
def test_tiny_model_learns_shapes_zero_shot(shapes_run):
    """From scratch on CPU (configs/tiny_cpu.yaml, the session's shared `shapes_run`), then
    zero-shot on held-out drawings with label prompts: >= 90%."""
    from biomedclip.train.shapes import COLOURS, LABELS, SHAPES, draw_sample

    summary = shapes_run["summary"]
    print("learning summary:", json.dumps(summary, indent=1))
    assert (shapes_run["dir"] / "tensorboard").is_dir()
    losses = [m["loss"] for m in shapes_run["metrics"] if "loss" in m]
    assert len(losses) == summary["steps"] == 800
    drop = np.mean(losses[:20]) - np.mean(losses[-50:])
    print(f"loss: first 20 steps {np.mean(losses[:20]):.3f}, last 50 {np.mean(losses[-50:]):.3f}")
    assert drop > 1.0

    # the trained model loads with biomedclip.load and classifies unseen drawings zero-shot
    model, preprocess, tokenizer = biomedclip.load(str(shapes_run["model"]))
    rng = np.random.default_rng(12345)  # not the training or validation seed
    held_out = [draw_sample(rng) for _ in range(300)]
    result = biomedclip.zero_shot(model, [s.image for s in held_out], list(LABELS))
    pred = [LABELS[i] for i in result.probs.argmax(dim=-1).tolist()]
    accuracy = float(np.mean([p == s.label for p, s in zip(pred, held_out)]))
    print(
        f"zero-shot accuracy on 300 held-out drawings ({len(COLOURS)} colours x "
        f"{len(SHAPES)} shapes): {accuracy:.3f}"
    )
    assert accuracy >= 0.90
    assert summary["val_zeroshot_accuracy"] >= 0.85
    assert summary["val_image_to_text_R@10"] > 10 / SHAPES_N_VAL  # well above chance


@pytest.mark.slow
def test_full_size_finetune_on_real_pairs_fits_memory(tmp_path):
    """ModelConfig.biomedclip() (random init: the released weights are not available offline),
    a few steps on MedICaT figures and captions, gradient checkpointing, small batch, 2 cores."""
    import pandas as pd

    medicat = shared_path("pmc", "medicat")
    hub = shared_path("biomedclip_hub")
    rows = [
        json.loads(line)
        for line in (medicat / "sample.jsonl").read_text().splitlines()
        if line.strip()
    ]
    table = []
    for r in rows:
        image = medicat / "figures" / f"{r['pdf_hash']}_{r['fig_uri']}"
        assert image.is_file(), image
        table.append({"filepath": str(image), "caption": r["s2_caption"]})
    pd.DataFrame(table).to_csv(tmp_path / "pairs.csv", index=False)
    cfg = {
        "model": {
            "init": "scratch",
            "preset": "biomedclip",
            "tokenizer": str(hub),
            "grad_checkpointing": True,
        },
        "data": {
            "train": str(tmp_path / "pairs.csv"),
            "val": str(tmp_path / "pairs.csv"),
            "workers": 0,
            "max_val_samples": 4,
        },
        "optim": {"lr": 1e-5, "warmup_steps": 1},
        "train": {"global_batch_size": 2, "steps": 2, "precision": "fp32", "device": "cpu"},
        "output": {
            "dir": str(tmp_path / "run"),
            "save_every": 2,
            "log_every": 1,
            "tensorboard": False,
        },
    }
    proc = run_cli(["train", str(write_config(tmp_path / "c.yaml", cfg))], timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    print(
        f"full-size fine-tune: {summary['samples_per_s']:.2f} samples/s, peak RSS {peak_gib:.1f} GiB"
    )
    assert summary["parameters"] > 190e6 and summary["steps"] == 2
    assert np.isfinite(summary["final_loss"]) and "val_loss" in summary
    assert peak_gib < 8
    shutil.rmtree(tmp_path / "run")  # ~3 GB of full-size checkpoints: not kept in pytest's tmp
