"""Baselines through the same harness: an open_clip architecture and transformers CLIP / SigLIP
checkpoints (small random-weight configs built here, no downloads) beside BiomedCLIP in one
`eval reproduce --models` report."""

from __future__ import annotations

import json
import shutil

import pytest

from biomedclip.cli.main import main
from tests.conftest import shared_path


def open_clip_dir(tmp_path):
    import open_clip
    import torch

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "patch_size": 8,
            "head_width": 32,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    d = tmp_path / "oc"
    d.mkdir()
    model = open_clip.CLIP(**{k: v for k, v in cfg.items()})
    torch.manual_seed(0)
    (d / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    )
    torch.save(model.state_dict(), d / "open_clip_pytorch_model.bin")
    return d


def hf_dir(tmp_path, kind, hub_dir):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=str(hub_dir / "vocab.txt"), do_lower_case=True)
    common_text = dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32)  # fmt: skip
    common_vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, image_size=32, patch_size=8)  # fmt: skip
    d = tmp_path / kind
    if kind == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        cfg = CLIPConfig(text_config={**common_text, "eos_token_id": tok.sep_token_id,
                                      "pad_token_id": tok.pad_token_id},
                         vision_config=common_vision, projection_dim=16)  # fmt: skip
        CLIPModel(cfg).save_pretrained(d)
        CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ).save_pretrained(d)
    else:
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        cfg = SiglipConfig(text_config=common_text, vision_config=common_vision)
        SiglipModel(cfg).save_pretrained(d)
        SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.slow
def test_reproduce_models_side_by_side(tiny_model_dir, hub_dir, tmp_path, capsys):
    data = tmp_path / "data"
    src = shared_path("lc25000_lung")
    for c in ("lung_aca", "lung_n", "lung_scc"):  # 30 per class keeps it quick
        (data / "lc25000_lung" / c).mkdir(parents=True)
        for p in sorted((src / c).iterdir())[:30]:
            shutil.copy(p, data / "lc25000_lung" / c / p.name)
    models = [str(tiny_model_dir), f"open_clip:{open_clip_dir(tmp_path)}",
              f"hf:{hf_dir(tmp_path, 'clip', hub_dir)}", f"hf:{hf_dir(tmp_path, 'siglip', hub_dir)}"]  # fmt: skip
    out = tmp_path / "rep"
    args = ["eval", "reproduce", "--data-root", str(data), "--models", ",".join(models),
            "--datasets", "lc25000_lung", "--tasks", "zeroshot,linear-probe", "--no-cache",
            "--bootstrap", "20", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    records = json.loads((out / "results.json").read_text())
    zs = [r for r in records if r["task"] == "zeroshot_classification"]
    assert [r["model"] for r in zs] == models
    for r in zs:
        assert r["classes"] == ["lung adenocarcinomas", "normal lung tissue",
                                "lung squamous cell carcinomas"]  # fmt: skip
        assert 0 <= r["metrics"]["acc1"] <= 1 and r["n_samples"] == 18
    md = (out / "report.md").read_text()
    assert "## All models side by side" in md
    header = next(line for line in md.splitlines() if line.startswith("| dataset | task |"))
    assert all(m in header for m in models)
