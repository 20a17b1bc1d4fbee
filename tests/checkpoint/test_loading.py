"""Checkpoint formats, key normalisation, strict errors, configs and save/load round trips."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

import biomedclip
from biomedclip.checkpoint.state_dict import read_state_dict
from biomedclip.config import TEXT_MODEL_IDS, ModelConfig
from biomedclip.errors import CheckpointError, ConfigError, ModelNotFoundError
from biomedclip.model import BiomedCLIP


@pytest.fixture()
def tiny(tiny_model_dir):
    model, _, _ = biomedclip.load(tiny_model_dir)
    return model


def _same(a: BiomedCLIP, b: BiomedCLIP) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _dir_with(tmp_path, tiny_model_dir, name, write):
    d = tmp_path / "m"
    d.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, d / f.name)
    write(d / name)
    return d


def test_bin_with_legacy_keys(tmp_path, tiny_model_dir, tiny):
    """The released .bin layout: position_ids, pooler weights and a [1]-shaped logit_scale."""
    sd = dict(tiny.state_dict())
    sd["text.transformer.embeddings.position_ids"] = torch.arange(128)[None]
    sd["text.transformer.pooler.dense.weight"] = torch.zeros(64, 64)
    sd["text.transformer.pooler.dense.bias"] = torch.zeros(64)
    sd["logit_scale"] = sd["logit_scale"].reshape(1)
    d = _dir_with(
        tmp_path, tiny_model_dir, "open_clip_pytorch_model.bin", lambda p: torch.save(sd, p)
    )
    loaded, _, _ = biomedclip.load(d)
    assert _same(loaded, tiny)
    assert loaded.logit_scale.shape == ()


def test_training_checkpoint_with_module_prefix(tmp_path, tiny_model_dir, tiny):
    ckpt = {
        "epoch": 3,
        "name": "run",
        "state_dict": {"module." + k: v for k, v in tiny.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
    }
    d = _dir_with(tmp_path, tiny_model_dir, "epoch_3.pt", lambda p: torch.save(ckpt, p))
    loaded, _, _ = biomedclip.load(d)
    assert _same(loaded, tiny)


def test_single_safetensors_file_with_config(tmp_path, tiny_model_dir, tiny):
    f = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, f)
    cfg = ModelConfig.from_file(tiny_model_dir / "open_clip_config.json")
    model = biomedclip.load_model(f, config=cfg)
    assert _same(model, tiny)


def test_pickled_objects_refused(tmp_path, tiny_model_dir, tiny):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = {"state_dict": tiny.state_dict(), "extra": Evil()}
    d = _dir_with(
        tmp_path, tiny_model_dir, "open_clip_pytorch_model.bin", lambda p: torch.save(bad, p)
    )
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        biomedclip.load(d)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_corrupt_files_name_the_file(tmp_path, tiny, damage, suffix):
    f = tmp_path / f"w{suffix}"
    if suffix == ".bin":
        torch.save(tiny.state_dict(), f)
    else:
        save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, f)
    data = f.read_bytes()
    f.write_bytes(
        {"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00junk" * 99}[damage]
    )
    with pytest.raises(CheckpointError, match=str(f)):
        read_state_dict(f)


def test_strict_error_lists_missing_and_unexpected(tmp_path, tiny_model_dir, tiny):
    sd = dict(tiny.state_dict())
    del sd["visual.head.proj.weight"]
    sd["text.extra_head.weight"] = torch.zeros(2)
    d = _dir_with(tmp_path, tiny_model_dir, "m.safetensors", lambda p: save_file(sd, p))
    with pytest.raises(CheckpointError) as err:
        biomedclip.load(d)
    msg = str(err.value)
    assert "missing keys (1): visual.head.proj.weight" in msg
    assert "unexpected keys (1): text.extra_head.weight" in msg
    assert str(d / "m.safetensors") in msg


def test_wrong_architecture_reports_shapes(tmp_path, tiny):
    f = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, f)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        biomedclip.load_model(f)  # no config beside it: the full architecture is assumed


def test_missing_sources():
    with pytest.raises(ModelNotFoundError, match="no-such-dir"):
        biomedclip.load("no-such-dir/")
    with pytest.raises(ModelNotFoundError, match="expected 'hf-hub"):
        biomedclip.load("hf-hub:justonepart")


def test_directory_without_weights(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="no weights file"):
        biomedclip.load(tmp_path)


def test_save_pretrained_round_trip_offline(tmp_path, tiny, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, _, tok = biomedclip.load(tiny_model_dir)
    out = tiny.save_pretrained(tmp_path / "out", tokenizer=tok)
    assert {p.name for p in out.iterdir()} >= {
        "open_clip_model.safetensors",
        "open_clip_config.json",
        "tokenizer.json",
        "vocab.txt",
    }
    again, pre, tok2 = biomedclip.load(out)
    assert _same(again, tiny)
    assert again.config == tiny.config
    assert tok2(["red circle"]).input_ids.tolist() == tok(["red circle"]).input_ids.tolist()
    assert BiomedCLIP.from_pretrained(out).config == tiny.config


def test_dtype_and_device(tiny_model_dir):
    model, _, _ = biomedclip.load(tiny_model_dir, dtype="bf16")
    assert model.dtype == torch.bfloat16 and not model.training
    with pytest.raises(ValueError, match="unknown dtype"):
        biomedclip.load(tiny_model_dir, dtype="int3")


# ---- configs ---------------------------------------------------------------------------------
def test_both_config_spellings_and_text_ids(hub_dir):
    released = json.loads((hub_dir / "open_clip_config.json").read_text())
    a = ModelConfig.from_open_clip(released)
    new = json.loads(json.dumps(released))
    tc = new["model_cfg"]["text_cfg"]
    tc["hf_proj_type"] = tc.pop("proj")
    tc["hf_pooler_type"] = tc.pop("pooler_type")
    tc["hf_model_name"] = TEXT_MODEL_IDS[1]  # the renamed BiomedBERT id
    b = ModelConfig.from_open_clip(new)
    assert a.text.proj == b.text.proj == "mlp"
    assert a.text.bert == b.text.bert
    assert a.embed_dim == 512 and a.text.context_length == 256 and a.vision.image_size == 224
    assert a.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert (
        BiomedCLIP(a).state_dict().keys()
        == BiomedCLIP(ModelConfig.biomedclip()).state_dict().keys()
    )


def test_config_round_trip(tmp_path):
    cfg = ModelConfig.tiny(vocab_size=123)
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.from_file(tmp_path / "c.json") == cfg
    raw = json.loads((tmp_path / "c.json").read_text())
    assert raw["model_cfg"]["text_cfg"]["proj"] == "mlp"  # still readable by open_clip-style tools


def test_bad_configs(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        ModelConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="unsupported text projection"):
        ModelConfig.from_open_clip(
            {"model_cfg": {"vision_cfg": {}, "text_cfg": {"proj": "transformer"}}}
        )
    with pytest.raises(ConfigError, match="missing"):
        ModelConfig.from_open_clip({"model_cfg": {}})
