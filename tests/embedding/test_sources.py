"""Sources: folders, tables, text files, WebDataset shards and command-line inputs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biomedclip.embedding import sources
from biomedclip.errors import InputError

from .conftest import make_image, png_bytes, write_shard


def test_folder_is_recursive_sorted_and_relative(image_dir):
    src = sources.image_folder(image_dir)
    ids = [it.id for it in src.items()]
    assert ids == ["a.png", "b.jpg", "e.png", "sub/broken.jpg", "sub/c.png", "sub/deeper/d.jpeg"]
    assert all(it.path.startswith(str(image_dir)) for it in src.items())
    assert src.has_images and not src.has_texts and len(src) == 6


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="no image files"):
        sources.image_folder(tmp_path)


def test_csv_with_captions_and_metadata(tmp_path):
    make_image(tmp_path / "im" / "1.png", 0)
    (tmp_path / "pairs.csv").write_text(
        "path,caption,label,score\nim/1.png,a chest x-ray,lung,0.5\n/abs/2.png,brain mri,brain,1.5\n"
    )
    src = sources.table(tmp_path / "pairs.csv")
    items = list(src.items())
    assert [it.id for it in items] == ["im/1.png", "/abs/2.png"]
    assert items[0].path == str(tmp_path / "im" / "1.png") and items[1].path == "/abs/2.png"
    assert items[0].text == "a chest x-ray"
    assert items[1].meta == {"label": "brain", "score": 1.5}
    assert src.meta_schema.names == ["label", "score"]
    assert src.has_images and src.has_texts


def test_parquet_with_id_column_and_text_only(tmp_path):
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one", "two"]}), tmp_path / "t.parquet")
    src = sources.table(tmp_path / "t.parquet")
    assert [(it.id, it.text, it.path) for it in src.items()] == [
        ("x", "one", None),
        ("y", "two", None),
    ]
    assert not src.has_images and src.has_texts


def test_table_errors_name_the_file(tmp_path):
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(InputError, match="bad.csv: no image path column"):
        sources.table(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="no column 'nope'"):
        sources.table(tmp_path / "bad.csv", path_column="nope")
    (tmp_path / "dup.csv").write_text("id,text\na,x\na,y\n")
    with pytest.raises(InputError, match="duplicate id 'a'"):
        sources.table(tmp_path / "dup.csv")


def test_text_file_skips_blank_lines(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("chest x-ray\n\n  \nbrain mri\n")
    src = sources.text_file(f)
    assert [(it.id, it.text) for it in src.items()] == [
        ("line-1", "chest x-ray"),
        ("line-4", "brain mri"),
    ]


def test_shards_group_members_by_key(tmp_path):
    shard = write_shard(
        tmp_path / "s-000.tar",
        [
            ("k0", png_bytes(0), "caption zero", {"pmcid": "PMC1"}),
            ("dir/k1", png_bytes(1), "caption one", None),
            ("k2", None, "text only", {"a": 1}),
        ],
    )
    src = sources.ShardSource([shard])
    items = list(src.items())
    assert [it.id for it in items] == ["k0", "dir/k1", "k2"]
    assert items[0].data == png_bytes(0) and items[0].text == "caption zero"
    assert items[0].meta == {"shard": "s-000.tar", "metadata": '{"pmcid": "PMC1"}'}
    assert items[0].path == "s-000.tar#k0.png"
    assert items[2].data is None and items[2].path is None
    assert not src.sized and src.shards() == [str(shard)]


def test_from_inputs_dispatch(tmp_path, image_dir):
    write_shard(tmp_path / "d-000.tar", [("a", png_bytes(0), "x", None)])
    write_shard(tmp_path / "d-001.tar", [("b", png_bytes(1), "y", None)])
    src = sources.from_inputs([str(tmp_path / "d-{000..001}.tar")])
    assert isinstance(src, sources.ShardSource) and len(src.shards()) == 2
    assert isinstance(sources.from_inputs([str(image_dir)]), sources.ListSource)
    files = sources.from_inputs([str(image_dir / "a.png"), str(image_dir / "b.jpg")])
    assert [it.id for it in files.items()] == [str(image_dir / "a.png"), str(image_dir / "b.jpg")]
    t = sources.from_inputs([], texts_given=["a", "b"])
    assert [it.id for it in t.items()] == ["text-0", "text-1"]
    with pytest.raises(InputError, match="nothing to embed"):
        sources.from_inputs([])
    with pytest.raises(InputError, match="either --text or input files"):
        sources.from_inputs([str(image_dir)], texts_given=["a"])
    with pytest.raises(InputError, match="on its own"):
        sources.from_inputs([str(image_dir), str(image_dir / "a.png")])


def test_braces_expand_like_training_shard_lists(tmp_path):
    """Embedding inputs and training shard lists use one brace expander (lists and ranges)."""
    from biomedclip.train.data import resolve_shards

    for name in ("train-000.tar", "train-001.tar", "val-000.tar"):
        write_shard(tmp_path / name, [("a", png_bytes(0), "x", None)])
    pattern = str(tmp_path / "{train-{000..001},val-000}.tar")
    src = sources.from_inputs([pattern])
    assert (
        src.shards()
        == resolve_shards(pattern)
        == [str(tmp_path / n) for n in ("train-000.tar", "train-001.tar", "val-000.tar")]
    )
    with pytest.raises(InputError, match="unbalanced braces"):
        sources.from_inputs([str(tmp_path / "x-{000..001.tar")])
