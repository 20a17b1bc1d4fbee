"""A learning test that can fail: language priors beat the majority answer on closed questions.

The image tower is frozen at random weights (its cached tokens tell images apart but say nothing
about their content), so only the questions can carry the model above the baseline of always giving
the training split's most frequent closed answer.
"""

from __future__ import annotations

import pytest

from tests.vqa.conftest import tiny_vqa_config

STEPS = 400


@pytest.mark.slow
def test_language_priors_beat_majority_baseline(tmp_path, vqa_rad_dir, hub_tokenizer_dir):
    from biomedclip.vqa.config import config_from_dict
    from biomedclip.vqa.metrics import majority_baseline
    from biomedclip.vqa.trainer import VQATrainer

    cfg = tiny_vqa_config(
        tmp_path / "run",
        vqa_rad_dir,
        hub_tokenizer_dir,
        model={"image": "frozen", "fusion": {"hidden": 128, "heads": 4}},
        data={"min_answer_count": 3},
        train={"steps": STEPS, "global_batch_size": 64},
        optim={"lr": 2e-3, "schedule": "constant"},
        output={"save_every": 10_000, "log_every": 100},
    )
    trainer = VQATrainer(config_from_dict(cfg))
    summary = trainer.run()
    assert summary["image_features"] == "cached"
    baseline = majority_baseline(trainer.splits["train"], trainer.splits["test"], "CLOSED")
    closed = summary["test_closed_accuracy"]
    print(f"VQA-RAD test closed accuracy {closed:.3f} vs majority-answer baseline {baseline:.3f}")
    assert closed > baseline + 0.05
