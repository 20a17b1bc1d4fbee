"""The MedICaT sample read as figure-caption pairs and written to shards."""

from __future__ import annotations

import io
import json

import pytest
import webdataset as wds
from PIL import Image
from pmc_helpers import shared_path, small_config

from biomedclip.errors import InputError
from biomedclip.eval.pairs import iter_medicat
from biomedclip.pmc.medicat import import_medicat
from biomedclip.pmc.pipeline import Pipeline


@pytest.fixture(scope="module")
def medicat_dir():
    return shared_path("pmc", "medicat")


def test_read_medicat_pairs(medicat_dir):
    pairs = list(iter_medicat(medicat_dir / "sample.jsonl", medicat_dir / "figures"))
    assert len(pairs) == 10 and len({p.paper for p in pairs}) == 5
    assert all(p.image.is_file() for p in pairs)
    first = pairs[0]
    assert first.paper.startswith("26491ab7") and first.fig_key == "Figure4"
    assert first.caption == (
        "Figure 4. Nuclear magnetic resonance scan demonstrating the occipital "
        "lesion with irregular borders surrounded by slight edema."
    )
    assert first.doi == "10.1001/archopht.117.11.1553"
    assert sum(p.caption.startswith("Fig") for p in pairs) == 10


def test_bad_medicat_line_named(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"pdf_hash": "a", "fig_uri": "b.png"}\n{"oops": 1}\n')
    with pytest.raises(InputError, match="x.jsonl:2"):
        list(iter_medicat(bad, tmp_path))


def test_medicat_to_shards(medicat_dir, tokenizer_dir, tmp_path):
    pipe = Pipeline(
        small_config(tmp_path / "out", tokenizer_dir, fractions=(1.0, 0.0, 0.0), shard_samples=100)
    )
    counts = import_medicat(
        medicat_dir / "sample.jsonl", medicat_dir / "figures", pipe.work, pipe.cfg.pair
    )
    assert counts == {"papers": 5, "pairs": 10, "dropped": 0}
    pipe.run_split()
    pipe.run_write()
    report = pipe.run_report()
    assert report["write"]["samples"] + report["dedup"]["duplicates"] == 10
    samples = list(
        wds.WebDataset(str(tmp_path / "out" / "shards" / "train-000000.tar"), shardshuffle=False)
    )
    captions = {json.loads(line)["s2_caption"] for line in (medicat_dir / "sample.jsonl").open()}
    for s in samples:
        assert s["txt"].decode() in captions
        assert Image.open(io.BytesIO(s["jpg"])).mode == "RGB"
        assert json.loads(s["json"])["article_type"] == "medicat"


def test_medicat_import_finds_plainly_named_figures(tokenizer_dir, tmp_path):
    """The pipeline reads MedICaT with the evaluation's reader: ``<fig_uri>`` without the
    ``<pdf_hash>_`` prefix is found (the pipeline's own reader used to drop it as missing)."""
    from benchmarks._pmc_corpus import figure_image

    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "f1.jpg").write_bytes(figure_image(1))
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps(
            {"pdf_hash": "h1", "fig_uri": "f1.jpg", "fig_key": "Figure1", "s2_caption": "A CT."}
        )
        + "\n"
    )
    pipe = Pipeline(small_config(tmp_path / "out", tokenizer_dir))
    counts = import_medicat(jsonl, figures, pipe.work, pipe.cfg.pair)
    assert counts == {"papers": 1, "pairs": 1, "dropped": 0}
