"""The local engine: exactness, bucketing, failures, Parquet output, resume."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from biomedclip.embedding import (
    EmbedConfig,
    embed_images,
    embed_texts,
    embed_to_dataset,
    read_embeddings,
    read_manifest,
    sources,
)
from biomedclip.embedding.batching import text_batches
from biomedclip.errors import ConfigError, InputError

from .conftest import make_image, png_bytes, write_shard


def direct_image(model, preprocess, path):
    with torch.no_grad():
        x = preprocess(Image.open(path)).unsqueeze(0)
        return model.encode_image(x, normalize=True)[0].numpy()


def direct_text(model, tokenizer, text):
    with torch.no_grad():
        tb = tokenizer([text])
        return model.encode_text(tb.input_ids, tb.attention_mask, normalize=True)[0].numpy()


def test_embed_images_matches_direct_encoding_and_keeps_order(tiny, image_dir):
    model, pre, _ = tiny
    paths = [image_dir / "e.png", image_dir / "sub" / "c.png", image_dir / "a.png"]
    res = embed_images(model, pre, paths, EmbedConfig(batch_size=2, num_workers=0, progress=False))
    assert res.ids == [str(p) for p in paths] and not res.failures
    for p, v in zip(paths, res.embeddings):
        np.testing.assert_allclose(v, direct_image(model, pre, p), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)


def test_bad_image_is_reported_and_the_rest_survives(tiny, image_dir, tmp_path):
    model, pre, _ = tiny
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [
        image_dir / "a.png",
        image_dir / "sub" / "broken.jpg",
        tmp_path / "empty.png",
        tmp_path / "missing.png",
        image_dir / "b.jpg",
    ]
    res = embed_images(model, pre, paths, EmbedConfig(batch_size=8, num_workers=0, progress=False))
    assert res.ids == [str(image_dir / "a.png"), str(image_dir / "b.jpg")]
    errors = {f.id: f.error for f in res.failures}
    assert set(errors) == {str(p) for p in paths[1:4]}
    assert "broken.jpg" in errors[str(paths[1])]
    assert "empty" in errors[str(paths[2])] and "not found" in errors[str(paths[3])]


def test_text_buckets_pad_only_to_the_longest_and_sort_by_length(tiny):
    _, _, tok = tiny
    texts = ["a chest x ray of the left lung with a small tumor", "mri", "a brain scan", "", "ct"]
    items = [sources.Item(str(i), text=t) for i, t in enumerate(texts)]
    batches, failures = text_batches(tok, items, batch_size=2)
    assert [f.id for f in failures] == ["3"]
    lengths = [tok.count_tokens([it.text])[0] for b in batches for it in b.items]
    assert lengths == sorted(lengths)
    for b in batches:
        assert b.input_ids.shape[1] == max(tok.count_tokens([it.text])[0] for it in b.items)
        assert b.attention_mask.sum(1).tolist() == tok.count_tokens([it.text for it in b.items])
    budgeted, _ = text_batches(tok, items, batch_size=8, token_budget=10)
    assert all(b.input_ids.numel() <= 10 or len(b.items) == 1 for b in budgeted)


def test_embed_texts_equal_one_by_one_encoding(tiny):
    model, _, tok = tiny
    texts = ["chest x ray", "a large tumor in the left lung of the patient", "mri", "benign"]
    res = embed_texts(model, tok, texts, EmbedConfig(text_batch_size=3, progress=False))
    assert res.ids == [f"text-{i}" for i in range(4)]
    for t, v in zip(texts, res.embeddings):
        np.testing.assert_allclose(v, direct_text(model, tok, t), atol=1e-5)


def test_bf16_fast_path_stays_close_to_fp32(tiny, image_dir):
    model, pre, _ = tiny
    paths = sorted(p for p in image_dir.rglob("*.png"))
    ref = embed_images(model, pre, paths, EmbedConfig(num_workers=0, progress=False)).embeddings
    fast = embed_images(
        model, pre, paths, EmbedConfig(num_workers=0, precision="bf16", progress=False)
    ).embeddings
    assert not np.array_equal(ref, fast)  # autocast really ran
    assert (ref * fast).sum(1).min() > 0.99


def test_config_validation():
    with pytest.raises(ConfigError):
        EmbedConfig(precision="int8")
    with pytest.raises(ConfigError):
        EmbedConfig(modality="audio")
    with pytest.raises(ConfigError):
        EmbedConfig(storage_dtype="int8")


def test_dataset_schema_manifest_and_errors(tiny, image_dir, tmp_path):
    model, pre, tok = tiny
    out = tmp_path / "emb"
    stats = embed_to_dataset(
        model,
        pre,
        tok,
        sources.image_folder(image_dir),
        out,
        EmbedConfig(batch_size=2, num_workers=2, progress=False),
        model_source="tiny",
    )
    assert (stats.images, stats.failed) == (5, 1)
    parts = sorted(out.glob("part-*.parquet"))
    schema = pq.read_schema(parts[0])
    assert schema.names == ["id", "path", "text", "modality", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.field("item", pa.float32()), 32)
    manifest = read_manifest(out)
    assert manifest["model"] == "tiny" and manifest["dim"] == 32 and manifest["normalized"] is True
    assert manifest["count"] == 5 and manifest["dtype"] == "float32" and manifest["complete"]
    assert "model_sha256" in manifest
    ids, emb, table = read_embeddings(out)
    assert sorted(ids) == ["a.png", "b.jpg", "e.png", "sub/c.png", "sub/deeper/d.jpeg"]
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    row = ids.index("sub/c.png")
    np.testing.assert_allclose(
        emb[row], direct_image(model, pre, image_dir / "sub" / "c.png"), atol=1e-6
    )
    assert set(table.column("modality").to_pylist()) == {"image"}
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["sub/broken.jpg"] and "cannot decode" in errors[0]["error"]


def test_resume_after_a_kill_skips_finished_items(tiny, image_dir, tmp_path):
    model, pre, tok = tiny
    out = tmp_path / "emb"
    src = sources.image_folder(image_dir)
    cfg = EmbedConfig(batch_size=2, num_workers=0, rows_per_part=2, progress=False)

    from biomedclip.embedding import store

    calls = {"n": 0}
    real_add = store.EmbeddingWriter.add

    def dying_add(self, *a, **k):  # the process "dies" in the middle of the third batch
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, *a, **k)

    store.EmbeddingWriter.add = dying_add
    try:
        with pytest.raises(KeyboardInterrupt):
            embed_to_dataset(model, pre, tok, src, out, cfg, model_source="tiny")
    finally:
        store.EmbeddingWriter.add = real_add
    # what survived is readable: every batch written before the interrupted one
    ids_before, _, _ = read_embeddings(out)
    assert ids_before == ["a.png", "b.jpg", "e.png"] and not read_manifest(out)["complete"]
    assert not list(out.glob(".*.tmp"))
    stats = embed_to_dataset(model, pre, tok, src, out, cfg, model_source="tiny")
    assert (stats.skipped, stats.images, stats.failed) == (3, 2, 1)
    ids, emb, _ = read_embeddings(out)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 5
    assert read_manifest(out)["complete"]
    fresh = embed_images(model, pre, [image_dir / i for i in ids], cfg).embeddings
    np.testing.assert_allclose(emb, fresh, atol=1e-6)


def test_fixed_inputs_leave_the_errors_file_on_rerun(tiny, tmp_path):
    model, pre, tok = tiny
    root = tmp_path / "imgs"
    make_image(root / "ok.png", 0)
    (root / "bad.png").write_bytes(b"nope")
    out = tmp_path / "emb"
    cfg = EmbedConfig(num_workers=0, progress=False)
    embed_to_dataset(model, pre, tok, sources.image_folder(root), out, cfg, model_source="tiny")
    assert "bad.png" in (out / "errors.jsonl").read_text()
    make_image(root / "bad.png", 1)
    stats = embed_to_dataset(
        model, pre, tok, sources.image_folder(root), out, cfg, model_source="tiny"
    )
    assert (stats.images, stats.skipped, stats.failed) == (1, 1, 0)
    assert (out / "errors.jsonl").read_text() == ""
    assert read_manifest(out)["errors"] == 0


def test_rerun_with_another_model_is_refused(tiny, image_dir, tmp_path):
    model, pre, tok = tiny
    out = tmp_path / "emb"
    cfg = EmbedConfig(num_workers=0, progress=False)
    embed_to_dataset(model, pre, tok, sources.image_folder(image_dir), out, cfg, model_source="a")
    with pytest.raises(InputError, match="model='a'"):
        embed_to_dataset(
            model, pre, tok, sources.image_folder(image_dir), out, cfg, model_source="b"
        )
    stats = embed_to_dataset(
        model, pre, tok, sources.image_folder(image_dir), out, cfg, model_source="b", overwrite=True
    )
    assert stats.images == 5 and read_manifest(out)["model"] == "b"


def test_pairs_table_both_modalities_float16_and_metadata(tiny, tmp_path):
    model, pre, tok = tiny
    make_image(tmp_path / "1.png", 0)
    make_image(tmp_path / "2.png", 1)
    (tmp_path / "pairs.csv").write_text(
        "id,path,caption,label\np1,1.png,chest x ray,lung\np2,2.png,brain mri,brain\n"
        "p3,missing.png,bone,bone\n"
    )
    out = tmp_path / "emb"
    stats = embed_to_dataset(
        model,
        pre,
        tok,
        sources.table(tmp_path / "pairs.csv"),
        out,
        EmbedConfig(modality="both", storage_dtype="float16", num_workers=0, progress=False),
        model_source="tiny",
    )
    assert (stats.images, stats.texts, stats.failed) == (2, 3, 1)
    schema = pq.read_schema(next(out.glob("part-*.parquet")))
    assert schema.field("embedding").type.value_type == pa.float16()
    assert schema.names[-1] == "label"
    ids, emb, table = read_embeddings(out, modality="text")
    assert sorted(ids) == ["p1", "p2", "p3"] and emb.dtype == np.float32
    i = ids.index("p2")
    assert table.column("text")[i].as_py() == "brain mri"
    assert table.column("label")[i].as_py() == "brain"
    np.testing.assert_allclose(emb[i], direct_text(model, tok, "brain mri"), atol=2e-3)
    img_ids, _, _ = read_embeddings(out, modality="image")
    assert sorted(img_ids) == ["p1", "p2"]


def test_shards_with_workers_equal_single_process(tiny, tmp_path):
    model, pre, tok = tiny
    shards = [
        write_shard(
            tmp_path / f"s-{i}.tar",
            [(f"s{i}k{j}", png_bytes(10 * i + j), f"caption {i} {j}", {"j": j}) for j in range(3)],
        )
        for i in range(3)
    ]
    (tmp_path / "s-3.tar").write_bytes(b"this is no tar file")
    shards.append(tmp_path / "s-3.tar")
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"emb{workers}"
        stats = embed_to_dataset(
            model,
            pre,
            tok,
            sources.ShardSource(shards),
            out,
            EmbedConfig(batch_size=2, num_workers=workers, progress=False, modality="both"),
            model_source="tiny",
        )
        assert (stats.images, stats.texts, stats.failed) == (9, 9, 1)
        ids, emb, table = read_embeddings(out, modality="image")
        runs[workers] = dict(zip(ids, emb))
        meta = json.loads(table.column("metadata")[0].as_py())
        assert "j" in meta and table.column("shard")[0].as_py().startswith("s-")
    assert runs[0].keys() == runs[2].keys() and len(runs[0]) == 9
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[2][k], atol=1e-6)
