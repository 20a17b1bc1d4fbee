"""Reading image-caption pairs: PAIRS.csv and the MedICaT sample."""

from __future__ import annotations

import pytest

from biomedclip.errors import InputError
from biomedclip.eval.pairs import read_pairs
from tests.conftest import shared_path


def test_csv_paths_are_relative_to_the_csv(tmp_path):
    (tmp_path / "sub").mkdir()
    csv = tmp_path / "sub" / "pairs.csv"
    csv.write_text('image,caption\nimgs/a.png,"A chest X-ray, frontal"\n/abs/b.png,brain MRI\n')
    pairs = read_pairs(csv)
    assert pairs[0].image == tmp_path / "sub" / "imgs" / "a.png"
    assert str(pairs[1].image) == "/abs/b.png"
    assert pairs[0].caption == "A chest X-ray, frontal" and pairs[0].id == "0"


def test_csv_accepts_text_column_and_ids_tsv(tmp_path):
    tsv = tmp_path / "p.tsv"
    tsv.write_text("ID\tImage\tText\nx1\ta.png\thello\n")
    (p,) = read_pairs(tsv)
    assert (p.id, p.image.name, p.caption) == ("x1", "a.png", "hello")


@pytest.mark.parametrize(
    "content, match",
    [
        ("picture,caption\na.png,x\n", "columns"),
        ("image,caption\na.png,\n", "line 2"),
        ("image,caption\n", "no pairs"),
    ],
)
def test_bad_csv_is_named(tmp_path, content, match):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(InputError, match=match):
        read_pairs(f)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_pairs(tmp_path / "none.csv")


def test_medicat_sample():
    jsonl = shared_path("pmc", "medicat", "sample.jsonl")
    pairs = read_pairs(jsonl)
    assert len(pairs) == 10
    assert all(p.image.is_file() for p in pairs)  # <pdf_hash>_<fig_uri> in figures/
    assert pairs[0].caption.startswith("Figure 4. Nuclear magnetic resonance")
    assert pairs[0].id == "26491ab76c6e8d6acc582e71bb6b3b5f5601ccc2/Figure4"
    assert len({p.id for p in pairs}) == 10


def test_medicat_figures_named_plainly(tmp_path):
    """``<fig_uri>`` without the ``<pdf_hash>_`` prefix is found too, by every MedICaT reader."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f1.png").write_bytes(b"png")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        '{"pdf_hash": "h1", "fig_uri": "f1.png", "fig_key": "Figure1", "s2_caption": " A  b "}\n'
    )
    (p,) = read_pairs(jsonl)
    assert (p.id, p.image, p.caption) == ("h1/Figure1", tmp_path / "figures" / "f1.png", "A b")
