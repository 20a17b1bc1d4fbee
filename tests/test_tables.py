"""One table reader (biomedclip.tables) behind embedding sources, evaluation pairs and training."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biomedclip.embedding import sources
from biomedclip.errors import ConfigError, InputError
from biomedclip.eval.pairs import read_pairs
from biomedclip.tables import read_table
from biomedclip.train.data import read_table as train_table

CSV = '\ufeffID, Filepath ,Caption,label\n007,imgs/a.png,"A chest X-ray, frontal",3\n008,/abs/b.png,brain MRI,4\n'


@pytest.fixture()
def pairs_csv(tmp_path):
    path = tmp_path / "sub" / "pairs.csv"
    path.parent.mkdir()
    path.write_text(CSV, encoding="utf-8")
    return path


def test_every_consumer_reads_the_same_rows(pairs_csv):
    """Header names match ignoring case and spaces (and a BOM), ids keep their leading zeros."""
    base = pairs_csv.parent
    want = [
        ("007", str(base / "imgs" / "a.png"), "A chest X-ray, frontal"),
        ("008", "/abs/b.png", "brain MRI"),
    ]
    t = read_table(pairs_csv)
    assert [(r.id, r.path, r.text) for r in t.rows] == want
    assert (t.path_column, t.caption_column, t.id_column) == (" Filepath ", "Caption", "ID")
    assert [r.meta for r in t.rows] == [{"label": 3}, {"label": 4}]
    src = sources.table(pairs_csv)
    assert [(it.id, it.path, it.text) for it in src.items()] == want
    assert [(p.id, str(p.image), p.caption) for p in read_pairs(pairs_csv)] == want
    raw = train_table(pairs_csv, "csv", "filepath", "caption")
    assert [r.ref for r in raw] == [w[1:] for w in want]


def test_parquet_cells_are_read_as_text(tmp_path):
    pq.write_table(
        pa.table({"id": [7, 8], "image": ["a.png", "b.png"], "text": ["x", "y"]}),
        tmp_path / "t.parquet",
    )
    t = read_table(tmp_path / "t.parquet", root=tmp_path / "r")
    assert [(r.id, r.path, r.text) for r in t.rows] == [
        ("7", str(tmp_path / "r" / "a.png"), "x"),
        ("8", str(tmp_path / "r" / "b.png"), "y"),
    ]


def test_errors_name_the_table(tmp_path):
    with pytest.raises(InputError, match="none.csv: table not found"):
        read_table(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="bad.csv: no column 'image'"):
        read_table(bad, path_column="image")
    with pytest.raises(ConfigError, match="data.image_column"):
        train_table(bad, "csv", "filepath", "caption")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="broken.parquet: cannot read table"):
        read_table(broken)
