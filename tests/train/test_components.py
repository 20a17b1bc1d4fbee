"""Config, loss, GradCache, lock/LoRA, tower init, data streams and checkpoints."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

import biomedclip
from biomedclip.errors import ConfigError
from biomedclip.train.config import load_config
from tests.train._ddp_worker import fixed_batch, tiny_model

# ---- config ---------------------------------------------------------------------------------


def test_config_yaml_toml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "optim:\n  lr: 5e-4\n  betas: [0.9, 0.98]\ntrain:\n  steps: 3\n"
    )
    cfg = load_config(
        tmp_path / "c.yaml",
        ["optim.lr=1e-4", "train.local_loss=true", "model.lora.enabled=true", "data.train=x.csv"],
    )
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.9, 0.98) and cfg.train.steps == 3
    assert cfg.train.local_loss is True and cfg.model.lora.enabled is True
    (tmp_path / "c.toml").write_text("[optim]\nlr = 3e-4\n[train]\nsteps = 7\n")
    assert load_config(tmp_path / "c.toml").optim.lr == 3e-4
    for repo_cfg in ("finetune_biomedclip.yaml", "tiny_cpu.yaml"):
        from tests.train.conftest import REPO

        load_config(REPO / "configs" / repo_cfg)


@pytest.mark.parametrize(
    "override,message",
    [
        (["optim.lrr=1"], "unknown config key"),
        (["train.steps=abc"], "expected an integer"),
        (["train.precision=fp8"], "not one of"),
        (["model.init=pretrained"], "needs model.source"),
        (["oops"], "key=value"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


# ---- loss -----------------------------------------------------------------------------------


def test_loss_matches_open_clip_and_clamp():
    open_clip_loss = pytest.importorskip("open_clip.loss")
    from biomedclip.train.loss import clamp_logit_scale, clip_loss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(20.0)
    ref = open_clip_loss.ClipLoss()(img, txt, scale)
    assert torch.allclose(clip_loss(img, txt, scale), ref, atol=1e-6)
    model = tiny_model()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    clamp_logit_scale(model, 100.0)
    assert float(model.logit_scale.detach().exp()) == pytest.approx(100.0, rel=1e-5)


# ---- GradCache --------------------------------------------------------------------------------


@pytest.mark.parametrize("micro", [1, 3, 4])
def test_gradcache_equals_full_batch(micro):
    from biomedclip.train.gradcache import contrastive_backward
    from biomedclip.train.loss import ClipLoss

    batch = fixed_batch(8)
    full, acc = tiny_model(), tiny_model()
    l_full = contrastive_backward(full, batch, ClipLoss())
    l_acc = contrastive_backward(acc, batch, ClipLoss(), micro_batch_size=micro)
    assert abs(float(l_full) - float(l_acc)) <= 1e-6
    for (k, p), (_, q) in zip(full.named_parameters(), acc.named_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=0), k


def test_gradcache_replays_dropout():
    """With dropout on, the recomputed micro-batches see the same masks as the cached pass."""
    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP
    from biomedclip.train.gradcache import contrastive_backward
    from biomedclip.train.loss import ClipLoss

    cfg = ModelConfig.tiny(vocab_size=64)
    cfg.vision.patch_dropout = 0.5
    torch.manual_seed(0)
    model = BiomedCLIP(cfg).train()
    batch = fixed_batch(8)
    torch.manual_seed(1)
    loss = contrastive_backward(model, batch, ClipLoss(), micro_batch_size=4)
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    # the same step without GradCache, replaying the RNG of each micro-batch by hand
    model.zero_grad()
    torch.manual_seed(1)
    outs = [
        model(*(batch[k][s] for k in ("pixels", "input_ids", "attention_mask")))
        for s in (slice(0, 4), slice(4, 8))
    ]
    img = torch.cat([o[0] for o in outs])
    txt = torch.cat([o[1] for o in outs])
    ref = ClipLoss()(img, txt, outs[0][2])
    ref.backward()
    assert abs(float(ref.detach()) - float(loss)) <= 1e-6
    for k, p in model.named_parameters():
        # logit_scale enters once per micro-batch in the reference's graph: compare the rest
        if k != "logit_scale":
            assert torch.allclose(grads[k], p.grad, atol=1e-5, rtol=0), k


# ---- lock / LoRA --------------------------------------------------------------------------------


def _one_step(model):
    from biomedclip.train.gradcache import contrastive_backward
    from biomedclip.train.loss import ClipLoss
    from biomedclip.train.trainer import param_groups

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-2)
    contrastive_backward(model, fixed_batch(8), ClipLoss())
    opt.step()
    return {k: not torch.equal(before[k], v) for k, v in model.named_parameters()}


def test_lock_trains_only_unlocked_blocks():
    from biomedclip.train.config import ModelSection
    from biomedclip.train.tuning import configure_trainable

    model = tiny_model()
    configure_trainable(
        model,
        ModelSection(
            lock_image=True,
            lock_image_unlocked_blocks=1,
            lock_text=True,
            lock_text_unlocked_blocks=0,
        ),
    )
    changed = _one_step(model)
    for k, moved in changed.items():
        trainable = (
            k.startswith("visual.trunk.blocks.1.")
            or k.startswith("visual.trunk.norm.")
            or k.startswith(("visual.head.", "text.proj."))
            or k == "logit_scale"
        )
        assert moved == trainable, k


def test_lora_trains_adapters_and_merges_into_loadable_model(tmp_path, tiny_tokenizer):
    from biomedclip.train.checkpoint import export_model
    from biomedclip.train.config import LoraConfig, ModelSection
    from biomedclip.train.tuning import configure_trainable

    model = tiny_model()
    configure_trainable(model, ModelSection(lora=LoraConfig(enabled=True, r=4, alpha=8)))
    changed = _one_step(model)
    lora_keys = [k for k in changed if "lora_" in k]
    assert lora_keys and all(changed[k] for k in lora_keys if "lora_B" in k)
    for k, moved in changed.items():
        if k.startswith(("visual.trunk.", "text.transformer.")) and "lora_" not in k:
            assert not moved, k
    model.eval()
    batch = fixed_batch(4)
    with torch.no_grad():
        expected = model(batch["pixels"], batch["input_ids"], batch["attention_mask"])
    export_model(model, tmp_path / "m", tiny_tokenizer)
    loaded, _, _ = biomedclip.load(str(tmp_path / "m"))
    with torch.no_grad():
        got = loaded(batch["pixels"], batch["input_ids"], batch["attention_mask"])
    for a, b in zip(expected[:2], got[:2]):
        assert torch.allclose(a, b, atol=1e-5)


# ---- tower initialisation -------------------------------------------------------------------------


def test_init_from_separate_tower_checkpoints(tmp_path):
    import timm
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    from biomedclip.config import ModelConfig
    from biomedclip.train.config import ModelSection
    from biomedclip.train.init import build_model

    tiny = ModelConfig.tiny(vocab_size=64)
    vit = timm.create_model(tiny.vision.timm_model_name, num_classes=10, **tiny.vision.timm_kwargs)
    vdir = tmp_path / "vit"
    vdir.mkdir()
    save_file(vit.state_dict(), str(vdir / "model.safetensors"))
    bert = BertModel(BertConfig(**vars(tiny.text.bert)), add_pooling_layer=True)
    bert.save_pretrained(tmp_path / "bert")
    model = build_model(
        ModelSection(
            init="towers",
            preset="tiny",
            vision_weights=str(vdir),
            text_weights=str(tmp_path / "bert"),
            overrides={"text.bert.vocab_size": 64},
        )
    )
    assert torch.equal(model.visual.trunk.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)
    assert torch.equal(
        model.text.transformer.embeddings.word_embeddings.weight,
        bert.embeddings.word_embeddings.weight,
    )
    with pytest.raises(biomedclip.errors.CheckpointError, match="vision weights"):
        build_model(ModelSection(init="towers", preset="biomedclip", vision_weights=str(vdir)))


# ---- data -----------------------------------------------------------------------------------------


def _spec(shapes_data, batch, rank=0, world=1, **kw):
    from biomedclip.train.config import DataSection
    from biomedclip.train.data import make_spec

    return make_spec(DataSection(train=shapes_data["train"], **kw), batch, rank, world, seed=3)


def _batches(spec, n, start=0, workers=0):
    from biomedclip.train.data import make_loader
    from biomedclip.train.shapes import shapes_tokenizer
    from biomedclip.transforms import train_transform

    loader = make_loader(
        spec,
        train_transform(biomedclip.ModelConfig.tiny().preprocess),
        shapes_tokenizer(),
        32,
        workers,
        start_batch=start,
    )
    it = iter(loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("resampled", [False, True])
def test_stream_resumes_at_any_batch(shapes_data, resampled):
    spec = _spec(shapes_data, 8, resampled=resampled, shuffle_buffer=16)
    full = _batches(spec, 6, workers=2)
    tail = _batches(spec, 3, start=3, workers=2)
    for a, b in zip(full[3:], tail):
        assert a["index"] == b["index"]
        assert torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["input_ids"], b["input_ids"])


def test_table_split_by_rank_equals_one_big_batch(tmp_path, shapes_data):
    import pandas as pd

    from biomedclip.train.data import index_shard, resolve_shards

    rows = []
    for i, s in enumerate(index_shard(resolve_shards(shapes_data["train"])[0])[:40]):
        shard, members = s.ref
        with open(shard, "rb") as f:
            f.seek(members["png"][0])
            (tmp_path / f"{i}.png").write_bytes(f.read(members["png"][1]))
            f.seek(members["txt"][0])
            rows.append({"filepath": f"{i}.png", "caption": f.read(members["txt"][1]).decode()})
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    one = _batches(_spec({"train": str(tmp_path / "t.parquet")}, 8), 2)
    two = [
        _batches(_spec({"train": str(tmp_path / "t.csv")}, 4, rank=r, world=2), 2) for r in range(2)
    ]
    for j in range(2):
        both = torch.cat([two[0][j]["pixels"], two[1][j]["pixels"]])
        assert torch.equal(one[j]["pixels"], both)


def test_bad_samples_are_skipped_and_counted(tmp_path, shapes_data):
    from biomedclip.train.data import index_shard, resolve_shards

    src = resolve_shards(shapes_data["train"])[0]
    out = tmp_path / "bad.tar"
    with tarfile.open(src) as tin, tarfile.open(out, "w") as tout:
        for i, m in enumerate(tin.getmembers()[:60]):  # 20 samples
            data = tin.extractfile(m).read()
            if i == 0:
                data = b"not a png"  # corrupt image of the first sample
            if i == 4:
                data = b"   "  # empty caption of the second sample
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    assert len(index_shard(str(out))) == 20
    batches = _batches(_spec({"train": str(out)}, 10, shuffle_buffer=0), 2)
    assert [b["n_bad"] for b in batches] == [2, 0]
    assert batches[0]["pixels"].shape[0] == 8 and batches[1]["pixels"].shape[0] == 10


def test_init_from_released_layout_checkpoint(tiny_model_dir):
    """``model.init: pretrained`` loads any biomedclip.load source; options like patch dropout apply."""
    from biomedclip.train.config import ModelSection
    from biomedclip.train.init import build_model

    ref, _, _ = biomedclip.load(str(tiny_model_dir))
    model = build_model(
        ModelSection(init="pretrained", source=str(tiny_model_dir), patch_dropout=0.25)
    )
    assert model.training and model.config.vision.patch_dropout == 0.25
    for (k, a), (_, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k


def test_cli_print_config(tmp_path, capsys):
    import json

    from biomedclip.cli.main import main
    from tests.train.conftest import REPO

    assert (
        main(
            [
                "train",
                str(REPO / "configs" / "finetune_biomedclip.yaml"),
                "--print-config",
                "--set",
                "train.global_batch_size=1024",
            ]
        )
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["global_batch_size"] == 1024 and cfg["optim"]["lr"] == 5e-4
    assert cfg["optim"]["betas"] == [0.9, 0.98] and cfg["optim"]["warmup_steps"] == 2000
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
