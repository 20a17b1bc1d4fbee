"""Issue 24: CoOp as published by default (the last epoch, Dassl TEST.FINAL_MODEL = "last_step";
"name." prompts; one warm-up epoch then cosine stepped per epoch), best-validation selection
as a named deviation, and `--method coop` with open_clip baselines (transformers baselines are
refused before any work, naming what is missing)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from biomedclip.cli.main import main
from biomedclip.errors import InputError
from tests.eval.test_baselines import hf_dir, open_clip_dir

NAMES = ["red circle", "blue square", "green cross"]


def _data(dim, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), np.arange(n) % 3


def test_default_is_the_published_recipe(tiny_encoder):
    from biomedclip.eval.coop import CoOpSettings, PromptLearner, learn_prompts

    assert CoOpSettings().select == "last" and CoOpSettings().suffix == "."
    tok = tiny_encoder.tokenizer
    learner = PromptLearner(tiny_encoder.model, tok, NAMES, CoOpSettings(n_ctx=4), seed=0)
    dot = tok.encode(["."])[0][1:-1]
    for row, n_tokens in zip(learner.ids.tolist(), learner.mask.sum(1).tolist()):
        assert (
            row[n_tokens - 1] == tok.sep_id and row[n_tokens - 1 - len(dot) : n_tokens - 1] == dot
        )

    x, y = _data(tiny_encoder.dim)
    settings = CoOpSettings(n_ctx=4, epochs=5, batch_size=4)  # 3 steps per epoch
    w_val, losses, info = learn_prompts(tiny_encoder.model, tok, NAMES, x, y, settings, seed=0,
                                        X_val=x[:6], y_val=y[:6])  # fmt: skip
    w_none, _, _ = learn_prompts(tiny_encoder.model, tok, NAMES, x, y, settings, seed=0)
    # the last epoch is kept whether or not validation images are given; none are scored
    np.testing.assert_array_equal(w_val, w_none)
    assert info["best_epoch"] is None and info["val_accuracy"] == [] and info["selection"] == "last"
    # Dassl: epoch 0 at the constant warm-up lr, then CosineAnnealingLR(T_max=epochs) stepped
    # once per epoch: epoch e >= 1 at 0.001 * (1 + cos(pi * (e - 1) / epochs))
    want = [1e-5] + [0.5 * 2e-3 * (1 + math.cos(math.pi * (e - 1) / 5)) for e in range(1, 5)]
    assert info["lr"] == pytest.approx(want) and len(losses) == 15 and info["steps"] == 15


def test_best_val_is_a_named_deviation_in_the_report(tiny_encoder, tmp_path):
    from biomedclip.eval.coop import CoOpSettings, coop_few_shot
    from biomedclip.eval.datasets.base import LabelledSet
    from biomedclip.eval.features import Features
    from biomedclip.eval.report import write_report

    x, y = _data(tiny_encoder.dim, 24)
    ds = LabelledSet("toy", "test", NAMES, [str(i) for i in range(24)], y, paths=["x"] * 24)
    feats = Features(ds, x, np.arange(24))
    res = {}
    for select in ("last", "best-val"):
        [res[select]] = coop_few_shot(
            tiny_encoder.model, tiny_encoder.tokenizer, feats, feats, NAMES, shots=(2,),
            seeds=(0,), settings=CoOpSettings(n_ctx=4, epochs=3, select=select),
            n_resamples=0, val=feats,
        )  # fmt: skip
    assert "deviations" not in res["last"].settings
    assert res["last"].settings["selection"].startswith("last epoch")
    assert res["best-val"].settings["selection"].startswith("best val")
    assert "published: last epoch" in res["best-val"].settings["deviations"][0]
    paths = write_report(list(res.values()), tmp_path, plots=False)
    records = json.loads(paths["json"].read_text())
    assert [("deviations" in r["settings"]) for r in records] == [False, True]
    assert "deviation from the published protocol: model selection" in paths["markdown"].read_text()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A 3-class image folder, 6 distinct images per class."""
    root = tmp_path_factory.mktemp("coopdata") / "shapes"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    return root


def test_coop_with_an_open_clip_baseline(folder, tmp_path, capsys):
    """It crashed with AttributeError (`model.text`, `tokenizer.context_length`)."""
    spec = f"open_clip:{open_clip_dir(tmp_path)}"
    out = tmp_path / "rep"
    args = ["eval", "few-shot", str(folder), "--model", spec, "--method", "coop", "--shots", "2",
            "--seeds", "0", "--coop-epochs", "2", "--no-cache", "--bootstrap", "0",
            "--out", str(out), "--json"]  # fmt: skip
    # this architecture's text context is 16 tokens: CoOp's 16 context vectors cannot fit
    assert main(args) == 2
    assert "use --coop-ctx 13 or fewer" in capsys.readouterr().err
    code = main([*args, "--coop-ctx", "4"])
    capsys.readouterr()
    assert code == 0
    [rec] = json.loads((out / "results.json").read_text())
    assert rec["task"] == "coop" and rec["model"] == spec and rec["settings"]["steps"] == [2]
    assert 0 <= rec["metrics"]["acc1"] <= 1


def test_coop_context_reaches_the_open_clip_text_tower(tmp_path):
    import torch

    from biomedclip.eval.baselines import load_baseline
    from biomedclip.eval.coop import CoOpSettings, PromptLearner

    enc = load_baseline(f"open_clip:{open_clip_dir(tmp_path)}")
    learner = PromptLearner(enc.model, enc.tokenizer, NAMES, CoOpSettings(n_ctx=4), seed=0)
    assert learner.ids.shape[1] == enc.tokenizer.fn.context_length
    assert learner().shape == (3, enc.dim)
    learner().sum().backward()
    assert float(learner.ctx.grad.abs().sum()) > 0
    with torch.no_grad():  # the "X" context replaced by the tokens' own embeddings = encode_text
        learner.ctx.copy_(enc.model.token_embedding(learner.ids[0, 1:5]))
        ref = enc.model.encode_text(learner.ids, normalize=True)
        np.testing.assert_allclose(learner().numpy(), ref.numpy(), atol=1e-5)


def test_coop_refuses_a_transformers_baseline_before_any_work(tmp_path, hub_dir, monkeypatch):
    from biomedclip.eval import runner
    from biomedclip.eval.baselines import load_baseline

    spec = f"hf:{hf_dir(tmp_path, 'clip', hub_dir)}"
    enc = load_baseline(spec)
    monkeypatch.setattr(runner.EvalContext, "features",
                        lambda *a, **k: pytest.fail("encoded before refusing"))  # fmt: skip
    ctx = runner.EvalContext(enc, data_root=tmp_path, model_name=spec)
    with pytest.raises(InputError, match=r"hf:.*CoOp is not available for transformers"):
        runner.run_coop(ctx, "lc25000_lung", (1,), (0,))
