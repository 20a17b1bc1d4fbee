"""A kill loses at most the batch in flight and never corrupts the dataset (issue 4, item 1)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from biomedclip.embedding import read_embeddings, read_manifest
from biomedclip.embedding.store import BATCH_RE, DatasetInfo, EmbeddingWriter, part_files
from tests.conftest import run_main

from .conftest import make_image

BATCH = 2
EMBED = "import sys; from biomedclip.cli.main import main; sys.exit(main(sys.argv[1:]))"


def embed_cmd(model_dir, images, out) -> list[str]:
    """`biomedclip embed ...` as a child process (its own process group can be killed)."""
    return [sys.executable, "-c", EMBED, *embed_args(model_dir, images, out)]


def embed_args(model_dir, images, out) -> list[str]:
    return [
        "embed",
        str(images),
        "--out",
        str(out),
        "--model",
        str(model_dir),
        "--batch-size",
        str(BATCH),
        "--workers",
        "0",
        "--rows-per-part",
        "64",
        "--no-progress",
    ]


def batch_files(out) -> list:
    return [p for p in out.glob("batch-*.parquet") if BATCH_RE.match(p.name)]


def by_id(directory) -> dict[str, np.ndarray]:
    ids, emb, _ = read_embeddings(directory)
    assert len(ids) == len(set(ids)), "duplicate ids"
    return dict(zip(ids, emb))


@pytest.fixture()
def many_images(tmp_path):
    root = tmp_path / "many"
    for i in range(160):
        make_image(root / f"{i:04d}.png", i, size=(24, 24))
    return root


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(
    capsys, tiny_model_dir, many_images, tmp_path
):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        embed_cmd(tiny_model_dir, many_images, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(batch_files(out)) < 3:  # >= 2 batches durable (the newest may be mid-rename)
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the job wrote no batches"
            time.sleep(0.005)
        before = set(by_id(out))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it was killed"
    assert len(before) >= 2 * BATCH

    # readable, duplicate-free; everything durable before the kill survived
    after = by_id(out)
    assert before <= set(after)
    manifest = read_manifest(out)
    assert not manifest["complete"]
    # the manifest counts what the job had finished; at most the batch in flight is missing
    assert len(after) - BATCH <= manifest["count"] <= len(after)
    assert len(after) < 160

    # rerun: finishes the job, skipping what survived
    done = subprocess.run(
        embed_cmd(tiny_model_dir, many_images, out), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not batch_files(out) and not list(out.glob(".*.tmp"))
    assert read_manifest(out)["complete"] and read_manifest(out)["count"] == 160
    resumed = by_id(out)

    fresh_dir = tmp_path / "fresh"  # uninterrupted, in this process
    code, _, err = run_main(capsys, *embed_args(tiny_model_dir, many_images, fresh_dir))
    assert code == 0, err
    fresh = by_id(fresh_dir)
    assert sorted(resumed) == sorted(fresh) and len(fresh) == 160
    for k, v in fresh.items():
        np.testing.assert_allclose(resumed[k], v, atol=1e-6)


def _items(start: int, n: int):
    from biomedclip.embedding.sources import Item

    return [Item(id=f"x{i}", path=None, text=None, meta={}) for i in range(start, start + n)]


def _writer(out, rows_per_part=5):
    import pyarrow as pa

    info = DatasetInfo("m", None, 4, "float32", "fp32", "image", "test")
    return EmbeddingWriter(out, info, pa.schema([]), rows_per_part=rows_per_part)


def test_each_batch_is_durable_and_compaction_makes_large_parts(tmp_path):
    out = tmp_path / "e"
    w = _writer(out)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((12, 4)).astype(np.float32)
    for b in range(4):
        w.add(_items(3 * b, 3), "image", vecs[3 * b : 3 * b + 3])
        # visible to readers at once, before any close()
        assert len(read_embeddings(out)[0]) == 3 * (b + 1)
        assert read_manifest(out)["count"] == 3 * (b + 1)
    assert len(batch_files(out)) == 4
    w.close()
    assert not batch_files(out)
    parts = part_files(out)
    assert [p.name for p in parts] == ["part-000000.parquet", "part-000001.parquet"]
    ids, emb, _ = read_embeddings(out)
    assert ids == [f"x{i}" for i in range(12)]
    np.testing.assert_array_equal(emb, vecs)


def test_a_kill_during_compaction_leaves_no_duplicates(tmp_path):
    out = tmp_path / "e"
    w = _writer(out, rows_per_part=4)
    vecs = np.eye(4, dtype=np.float32)[np.arange(10) % 4]
    for b in range(5):
        w.add(_items(2 * b, 2), "image", vecs[2 * b : 2 * b + 2])
    saved = tmp_path / "saved"
    saved.mkdir()
    for p in batch_files(out):
        shutil.copy2(p, saved / p.name)
    w.close()
    # as if killed after the first part was renamed into place, before its batches were deleted,
    # with stray temporary files from the next part and from a manifest update
    for p in sorted(saved.iterdir())[:2]:
        shutil.copy2(p, out / p.name)
    (out / ".part-000001.parquet.abc.tmp").write_bytes(b"torn")
    (out / ".manifest.json.def.tmp").write_bytes(b"{tor")
    ids, emb, _ = read_embeddings(out)
    assert ids == [f"x{i}" for i in range(10)]
    np.testing.assert_array_equal(emb, vecs)
    # a rerun finishes the interrupted cleanup and resumes after the last batch
    w2 = _writer(out, rows_per_part=4)
    assert not batch_files(out) and not list(out.glob(".*.tmp"))
    assert w2.skip_ids("image") == frozenset(ids)
    w2.add(_items(10, 2), "image", vecs[:2])
    w2.close()
    ids, _, _ = read_embeddings(out)
    assert ids == [f"x{i}" for i in range(12)]
    assert not batch_files(out)


def test_interrupted_batches_stay_readable_alongside_parts(tmp_path):
    """Parts from an earlier completed run plus batches of a killed resumed run."""
    out = tmp_path / "e"
    w = _writer(out)
    w.add(_items(0, 3), "image", np.ones((3, 4), np.float32))
    w.close()
    w = _writer(out)
    w.add(_items(3, 2), "image", np.ones((2, 4), np.float32))
    del w  # killed: no close()
    assert sorted(read_embeddings(out)[0]) == sorted(f"x{i}" for i in range(5))
    assert not read_manifest(out)["complete"]
    assert os.path.exists(out / "part-000000.parquet") and len(batch_files(out)) == 1
