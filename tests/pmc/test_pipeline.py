"""`biomedclip pmc build` end to end against a local HTTP mirror of PMC-style packages built from
the 8 real articles; quarantine of bad inputs; the stages one by one giving the same shards."""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pytest
import webdataset as wds
from benchmarks._pmc_corpus import (
    article_package,
    figure_image,
    package_bytes,
    package_path,
    set_pmcid,
)
from PIL import Image
from pmc_helpers import shard_bytes

from biomedclip.cli.main import main
from biomedclip.pmc.jats import parse_article


def _build_args(mirror, out, tokenizer_dir, *extra):
    return [
        "pmc",
        "build",
        "--out",
        str(out),
        "--mirror",
        mirror.url,
        "--tokenizer",
        str(tokenizer_dir),
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--shard-samples",
        "4",
        "--split",
        "0.6,0.2,0.2",
        "--workers",
        "1",
        "--no-progress",
        "--json",
        *extra,
    ]


def _samples(out):
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    urls = [str(out / "shards" / s["name"]) for s in manifest["shards"]]
    return manifest, list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def test_build_end_to_end(
    mirror_factory, real_packages, nxml_dir, tokenizer_dir, tmp_path, capsys, released_tokenizer
):
    mirror = mirror_factory(real_packages)
    out = tmp_path / "out"
    assert main(_build_args(mirror, out, tokenizer_dir)) == 0
    report = json.loads(capsys.readouterr().out)

    # what the XML says
    expected = {}
    for p in sorted(nxml_dir.glob("*.nxml")):
        ex = parse_article(p.read_bytes())
        for f in ex.figures:
            expected[f"{ex.meta.pmcid}_{f.index:03d}"] = (ex.meta, f)
    assert len(expected) == 17

    manifest, samples = _samples(out)
    assert sorted(s["__key__"] for s in samples) == sorted(expected)
    sizes = json.loads((out / "shards" / "sizes.json").read_text())
    assert sum(sizes.values()) == 17 == sum(s["samples"] for s in manifest["shards"])
    assert max(sizes.values()) <= 4
    split_of_article = defaultdict(set)
    for s in samples:
        meta, fig = expected[s["__key__"]]
        im = Image.open(io.BytesIO(s["jpg"]))
        assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) <= 512
        assert s["txt"].decode() == fig.caption
        js = json.loads(s["json"])
        assert (js["pmcid"], js["pmid"], js["doi"], js["fig_id"], js["label"], js["year"]) == (
            meta.pmcid,
            meta.pmid,
            meta.doi,
            fig.fig_id,
            fig.label,
            meta.year,
        )
        assert js["license"] == "CC BY" and js["journal"] == meta.journal
        assert s["__url__"].rsplit("/", 1)[1].startswith(js["split"] + "-")
        assert max(js["orig_width"], js["orig_height"]) > 256
        split_of_article[js["pmcid"]].add(js["split"])
    assert all(len(v) == 1 for v in split_of_article.values())  # no article spans two splits

    # stage report
    assert report["list"]["selected"] == 8
    assert report["fetch"] == {"articles": 8, "downloaded": 8}
    assert report["extract"]["parsed"] == 8 and report["extract"]["figures"] == 17
    assert report["extract"]["articles_without_figures"] == 2
    assert report["pair"] == {"figures": 17, "pairs": 17, "dropped": 0, "drop_reasons": {}}
    assert report["dedup"]["duplicates"] == 0
    assert sum(report["split"]["pairs"].values()) == 17 == report["write"]["samples"]
    lengths = released_tokenizer.count_tokens([f.caption for _, f in expected.values()])
    tok = report["caption_tokens"]["written"]
    assert tok["over_77"] == sum(n > 77 for n in lengths) and tok["over_256"] == sum(
        n > 256 for n in lengths
    )
    assert tok["max"] == max(lengths)
    assert sum(b["count"] for b in tok["histogram"]) == 17
    assert report["image_sizes"]["n"] == 17
    for png in ("caption_tokens.png", "image_sizes.png"):
        assert Image.open(out / "report" / png).format == "PNG"
    assert (out / "report" / "quarantine.jsonl").read_text() == ""

    # a second run is idempotent: nothing refetched, same bytes
    before = shard_bytes(out)
    n_requests = len(mirror.httpd.log)
    assert main(_build_args(mirror, out, tokenizer_dir)) == 0
    assert shard_bytes(out) == before
    assert len(mirror.httpd.log) == n_requests  # the file list is kept too
    assert main(_build_args(mirror, out, tokenizer_dir, "--refresh-list")) == 0
    assert len(mirror.httpd.log) == n_requests + 1 and shard_bytes(out) == before


def test_bad_inputs_are_quarantined_not_fatal(
    mirror_factory, real_packages, nxml_dir, tokenizer_dir, tmp_path, capsys
):
    pk = dict(real_packages)
    good = pk["PMC3574550"]  # mds526, 2 figures
    pk["PMC900001"] = good[: len(good) // 2]  # truncated gzip
    pk["PMC900002"] = package_bytes([("PMC900002/a.nxml", b"<article><body><fig></body>")])
    xml = set_pmcid((nxml_dir / "pone.0046493.nxml").read_bytes(), "PMC900003")
    pk["PMC900003"] = article_package(xml, "PMC900003", seed=77, skip_images=2)  # 4 figs, 2 missing
    pk["PMC900004"] = good  # listed, then removed from the mirror: 404
    pk["PMC900005"] = package_bytes([("PMC900005/readme.txt", b"hello")])  # no article XML
    pk["PMC900006"] = good  # the same article's images again: exact duplicates
    xml = set_pmcid((nxml_dir / "ehp-116-1694.nxml").read_bytes(), "PMC900007")
    bad_img = article_package(xml, "PMC900007", seed=78)
    pk["PMC900007"] = _replace_member(
        bad_img, "PMC900007/ehp-116-1694f2.jpg", figure_image(5)[:400]
    )  # truncated
    mirror = mirror_factory(pk)
    (mirror.root / package_path("PMC900004")).unlink()
    out = tmp_path / "out"
    assert main(_build_args(mirror, out, tokenizer_dir)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fetch"]["failed"] == 1 and report["fetch"]["downloaded"] == 14
    assert report["extract"]["quarantine_reasons"] == {
        "broken_package": 1,
        "malformed_xml": 1,
        "no_nxml": 1,
    }
    assert report["pair"]["drop_reasons"] == {"decode_error": 1, "missing_image": 2}
    assert report["dedup"]["reasons"] == {"duplicate_exact": 2}
    assert report["write"]["samples"] == 17 + 2 + 2
    lines = [json.loads(x) for x in (out / "report" / "quarantine.jsonl").read_text().splitlines()]
    by_article = defaultdict(list)
    for x in lines:
        by_article[x["article"]].append(x["reason"])
    assert by_article == {
        "PMC900001": ["broken_package"],
        "PMC900002": ["malformed_xml"],
        "PMC900003": ["missing_image", "missing_image"],
        "PMC900004": ["fetch_failed"],
        "PMC900005": ["no_nxml"],
        "PMC900007": ["decode_error"],
    }
    assert all(x.get("detail") for x in lines)
    # of two articles with the same images, the first in numeric PMCID order keeps them
    _, samples = _samples(out)
    keys = {s["__key__"] for s in samples}
    assert {"PMC900006_000", "PMC900006_001"} <= keys and not any(
        k.startswith("PMC3574550") for k in keys
    )


def _replace_member(pkg: bytes, name: str, data: bytes) -> bytes:
    import gzip
    import tarfile

    members = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(pkg))) as tf:
        for m in tf:
            members.append((m.name, data if m.name == name else tf.extractfile(m).read()))
    assert name in [n for n, _ in members]
    return package_bytes(members)


@pytest.mark.slow
def test_stages_one_by_one_equal_build(
    mirror_factory, real_packages, tokenizer_dir, tmp_path, capsys
):
    mirror = mirror_factory(real_packages)
    built = tmp_path / "built"
    assert main(_build_args(mirror, built, tokenizer_dir)) == 0
    staged = tmp_path / "staged"
    common = ["--out", str(staged), "--no-progress", "--json"]
    tok = ["--tokenizer", str(tokenizer_dir)]
    assert main(["pmc", "list", *common, "--mirror", mirror.url]) == 0
    assert main(["pmc", "fetch", *common, "--mirror", mirror.url]) == 0
    assert main(["pmc", "extract", *common, "--workers", "2"]) == 0
    assert len(list((staged / "extract").rglob("*.json"))) == 8
    assert main(["pmc", "pair", *common, *tok, "--workers", "2"]) == 0
    assert main(["pmc", "split", *common, "--split", "0.6,0.2,0.2"]) == 0
    assert main(["pmc", "write", *common, "--shard-samples", "4"]) == 0
    assert main(["pmc", "report", *common]) == 0
    report = json.loads((staged / "report" / "report.json").read_text())
    assert report["write"]["samples"] == 17
    assert shard_bytes(staged) == shard_bytes(built)
