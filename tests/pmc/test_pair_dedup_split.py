"""Pair stage (image conversion, filters, href resolution), dedup and split."""

from __future__ import annotations

import io

import numpy as np
import pytest
from benchmarks._pmc_corpus import figure_image
from PIL import Image

from biomedclip.pmc.config import PairConfig
from biomedclip.pmc.dedup import Deduplicator
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.jats import ArticleMeta, Extracted, Figure
from biomedclip.pmc.package import Package
from biomedclip.pmc.pair import PairDrop, convert_image, pair_figures
from biomedclip.pmc.split import assign_split


@pytest.mark.parametrize("fmt", ["jpg", "png", "gif", "tif"])
def test_convert_resizes_to_rgb_jpeg(fmt):
    data = figure_image(3, fmt, size=(1200, 600))
    c = convert_image(data, f"x.{fmt}", PairConfig())
    im = Image.open(io.BytesIO(c.jpeg))
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (512, 256)
    assert (c.orig_width, c.orig_height, c.width, c.height) == (1200, 600, 512, 256)
    assert len(c.phash) == 16 and len(c.sha256) == 64
    assert convert_image(data, "x", PairConfig()).jpeg == c.jpeg  # deterministic


def test_convert_keeps_small_images_and_honours_max_side():
    data = figure_image(4, "png", size=(300, 200))
    assert convert_image(data, "x", PairConfig()).width == 300
    assert convert_image(data, "x", PairConfig(max_side=100)).width == 100


def test_convert_converts_grayscale_and_rgba():
    for mode in ("L", "RGBA", "I;16"):
        buf = io.BytesIO()
        Image.new(mode, (64, 64)).save(buf, "PNG")
        assert (
            Image.open(io.BytesIO(convert_image(buf.getvalue(), "x", PairConfig()).jpeg)).mode
            == "RGB"
        )


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "decode_error"),
        (b"not an image", "unsupported_format"),
        (figure_image(1, "jpg", size=(200, 100))[:300], "decode_error"),
        (figure_image(1, "png", size=(200, 20)), "too_small"),
    ],
)
def test_convert_drops_with_reason(data, reason):
    with pytest.raises(PairDrop) as e:
        convert_image(data, "fig.jpg", PairConfig())
    assert e.value.reason == reason


def test_package_resolves_hrefs():
    pkg = Package(
        "p",
        "a.nxml",
        b"",
        {"f1.jpg": b"1", "F2.GIF": b"2", "f3.tif": b"3", "f3.jpg": b"3j", "f4.png": b"4"},
    )
    assert pkg.resolve("f1") == "f1.jpg"
    assert pkg.resolve("f2") == "F2.GIF"
    assert pkg.resolve("f3") == "f3.jpg"  # jpg preferred
    assert pkg.resolve("f4.tif") == "f4.png"  # listed as tif, shipped as png
    assert pkg.resolve("sub/f1.jpg") == "f1.jpg"
    assert pkg.resolve("nope") is None and pkg.resolve("") is None


def test_pair_figures_filters_and_reasons(tiny_tokenizer, monkeypatch):
    from biomedclip.pmc import pair as pair_mod

    monkeypatch.setattr(pair_mod, "get_tokenizer", lambda d: tiny_tokenizer)
    figs = [
        Figure(0, "F1", "Figure 1", "chest x ray of the left lung with a large tumor", "f1"),
        Figure(1, "F2", "Figure 2", "", "f2"),
        Figure(2, "F3", "Figure 3", "lung", "f3"),
        Figure(3, "F4", "Figure 4", "brain mri scan of a small tumor", "missing"),
        Figure(4, "F5", "Figure 5", "brain mri scan of a small tumor", ""),
        Figure(5, "F6", "Figure 6", "histopathology slide stain of a carcinoma", "f6"),
    ]
    pkg = Package(
        "p",
        "a.nxml",
        b"",
        {
            "f1.jpg": figure_image(1),
            "f2.jpg": figure_image(2),
            "f3.jpg": figure_image(3),
            "f6.png": b"broken",
        },
    )
    out = pair_figures(ArticleRef("PMC7", "x"), pkg, Extracted(ArticleMeta(), figs), PairConfig())
    assert [p["key"] for p in out["pairs"]] == ["PMC7_000"]
    assert [(d["fig_id"], d["reason"]) for d in out["drops"]] == [
        ("F2", "empty_caption"),
        ("F3", "caption_too_short"),
        ("F4", "missing_image"),
        ("F5", "no_graphic"),
        ("F6", "unsupported_format"),
    ]
    assert out["pairs"][0]["caption_tokens"] == len(tiny_tokenizer.encode(figs[0].caption)[0])
    out = pair_figures(
        ArticleRef("PMC7", "x"),
        pkg,
        Extracted(ArticleMeta(), figs[:1]),
        PairConfig(max_caption_tokens=6),
    )
    assert out["drops"][0]["reason"] == "caption_too_long"


def test_dedup_exact_and_near():
    base = figure_image(5, "png", size=(400, 300))
    c1 = convert_image(base, "a", PairConfig())
    # the same picture re-encoded as JPEG: other bytes, same content
    c2 = convert_image(_reencode(base), "b", PairConfig())
    c3 = convert_image(figure_image(6, "png", size=(400, 300)), "c", PairConfig())
    d = Deduplicator(4)
    assert d.check("a", c1.sha256, c1.phash) is None
    assert d.check("a2", c1.sha256, c1.phash) == ("duplicate_exact", "a")
    assert c2.sha256 != c1.sha256
    assert d.check("b", c2.sha256, c2.phash) == ("duplicate_near", "a")
    assert d.check("c", c3.sha256, c3.phash) is None
    strict = Deduplicator(0)
    assert strict.check("x", "1", "ffff0000ffff0000") is None
    assert strict.check("y", "2", "ffff0000ffff0001") is None  # 1 bit apart: kept at distance 0
    assert Deduplicator(1).check("y", "2", "0") is None


def _reencode(png: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_near_index_matches_brute_force():
    rng = np.random.default_rng(0)
    hashes = [int(rng.integers(0, 2**63)) for _ in range(300)]
    hashes += [
        h ^ (1 << int(rng.integers(0, 64))) ^ (1 << int(rng.integers(0, 64))) for h in hashes[:100]
    ]
    d = Deduplicator(3)
    kept: list[int] = []
    for i, h in enumerate(hashes):
        hit = d.check(str(i), str(i), f"{h:016x}")
        brute = any((h ^ k).bit_count() <= 3 for k in kept)
        assert (hit is not None) == brute
        if hit is None:
            kept.append(h)


def test_split_is_deterministic_and_proportional():
    ids = [f"PMC{i}" for i in range(20000)]
    splits = [assign_split(i, (0.8, 0.1, 0.1), "s") for i in ids]
    assert splits == [assign_split(i, (0.8, 0.1, 0.1), "s") for i in ids]
    frac = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.8) < 0.02 and abs(frac["val"] - 0.1) < 0.02
    assert {assign_split(i, (1.0, 0.0, 0.0)) for i in ids[:100]} == {"train"}
    assert {assign_split(i, (0.0, 0.0, 1.0)) for i in ids[:100]} == {"test"}
    other = [assign_split(i, (0.8, 0.1, 0.1), "other-salt") for i in ids]
    assert other != splits
