"""Write stage: shard layout, resume (finished shards skipped), stale shards removed; local
article folders as a source."""

from __future__ import annotations

import json
import tarfile

from pmc_helpers import shard_bytes, small_config

from biomedclip.pmc.config import ListConfig
from biomedclip.pmc.pipeline import Pipeline


def _local_pipeline(tmp_path, real_packages, tokenizer_dir, **kw):
    src = tmp_path / "packages"
    src.mkdir(exist_ok=True)
    for pmcid, data in real_packages.items():
        (src / f"{pmcid}.tar.gz").write_bytes(data)
    cfg = small_config(
        tmp_path / "out", tokenizer_dir, listing=ListConfig(local_dir=str(src)), **kw
    )
    return Pipeline(cfg)


def test_shard_layout_and_write_resume(tmp_path, real_packages, tokenizer_dir):
    pipe = _local_pipeline(tmp_path, real_packages, tokenizer_dir, fractions=(1.0, 0.0, 0.0))
    report = pipe.build()
    assert report["fetch"] == {"articles": 8, "local": 8}
    shards = pipe.work.shards_dir
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert names == [f"train-{i:06d}.tar" for i in range(5)]  # 17 pairs, 4 per shard
    with tarfile.open(shards / names[0]) as tf:
        members = tf.getmembers()
    assert [m.name.rsplit(".", 1)[1] for m in members[:3]] == ["jpg", "txt", "json"]
    assert {m.mtime for m in members} == {946684800} and {m.uid for m in members} == {0}
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["splits"]["train"]["pattern"] == "train-{000000..000004}.tar"
    assert manifest["splits"]["val"] == {"shards": 0, "samples": 0, "bytes": 0, "pattern": None}

    before = shard_bytes(pipe.work.root)
    first_mtime = (shards / names[0]).stat().st_mtime_ns
    (shards / names[3]).unlink()  # as if killed while writing the 4th shard
    pipe.run_write()
    assert (shards / names[0]).stat().st_mtime_ns == first_mtime  # finished shard skipped
    assert shard_bytes(pipe.work.root) == before

    pipe.cfg.write.shard_samples = 100  # a different layout: old shards go
    pipe.run_write()
    assert sorted(p.name for p in shards.glob("*.tar")) == ["train-000000.tar"]
    assert json.loads((shards / "sizes.json").read_text()) == {"train-000000.tar": 17}


def test_article_folders_as_source(tmp_path, nxml_dir, tokenizer_dir):
    from benchmarks._pmc_corpus import figure_image

    src = tmp_path / "articles"
    art = src / "PMC3574550"
    art.mkdir(parents=True)
    (art / "mds526.nxml").write_bytes((nxml_dir / "mds526.nxml").read_bytes())
    (art / "mds52601.jpg").write_bytes(figure_image(1))
    (art / "mds52602.gif").write_bytes(figure_image(2, "gif"))
    cfg = small_config(tmp_path / "out", tokenizer_dir, listing=ListConfig(local_dir=str(src)))
    report = Pipeline(cfg).build()
    assert report["pair"]["pairs"] == 2 and report["write"]["samples"] == 2
