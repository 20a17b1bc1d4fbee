"""Atomic writes and deterministic tar files (biomedclip.io_utils)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading

import pytest

from biomedclip import io_utils


def _no_umask(*args):
    raise AssertionError("os.umask called: it changes the mask of every thread of the process")


def test_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "umask", _no_umask)
    io_utils.atomic_write_json(tmp_path / "a.json", {"x": 1})
    io_utils.atomic_write_text(tmp_path / "b.txt", "é")
    io_utils.atomic_write_bytes(tmp_path / "c.bin", b"\x00")
    with io_utils.atomic_path(tmp_path / "d.bin") as tmp:
        tmp.write_bytes(b"d")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "é"
    assert (tmp_path / "d.bin").read_bytes() == b"d"


def test_permissions_follow_the_umask_while_other_threads_create_files(tmp_path):
    """Files created by other threads during atomic writes keep the umask's permissions (the old
    helper set the umask to 0 for a moment on every write)."""
    old = os.umask(0o027)
    try:
        stop, modes = threading.Event(), []

        def create_files():
            i = 0
            while not stop.is_set():
                p = tmp_path / f"other-{i}"
                p.touch()
                modes.append(stat.S_IMODE(p.stat().st_mode))
                p.unlink()
                i += 1

        t = threading.Thread(target=create_files)
        t.start()
        try:
            for i in range(300):
                io_utils.atomic_write_bytes(tmp_path / f"w{i % 5}.bin", b"x")
        finally:
            stop.set()
            t.join()
        assert modes and set(modes) == {0o640}
        assert stat.S_IMODE((tmp_path / "w0.bin").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.json"
    io_utils.atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), io_utils.atomic_open(target, "w") as f:
        f.write('{"v": 2, "half')
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    with io_utils.atomic_path(tmp_path / "m.safetensors") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".m.safetensors.")
        assert tmp.name.endswith(".tmp")
        tmp.write_bytes(b"weights")
    assert events == ["fsync", "replace"]
    assert (tmp_path / "m.safetensors").read_bytes() == b"weights"


def test_tar_files_are_byte_deterministic():
    members = [("k.jpg", b"\xff\xd8"), ("k.txt", "légende".encode()), ("k.json", b"{}")]
    a = io_utils.tar_bytes(members)
    assert a == io_utils.tar_bytes(members)
    with tarfile.open(fileobj=io.BytesIO(a)) as tf:
        infos = tf.getmembers()
        assert [m.name for m in infos] == ["k.jpg", "k.txt", "k.json"]
        assert {(m.mtime, m.mode, m.uid, m.uname) for m in infos} == {
            (io_utils.FIXED_MTIME, 0o444, 0, "")
        }
        assert tf.extractfile("k.txt").read().decode() == "légende"
