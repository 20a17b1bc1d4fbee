"""Kill-and-resume: SIGKILL a `biomedclip pmc build` subprocess mid-run, rerun it, and get shards
byte-identical to an uninterrupted run, with no pair lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import webdataset as wds
from benchmarks._pmc_corpus import real_corpus
from pmc_helpers import shard_bytes

from biomedclip.cli.main import main


def _args(mirror, out, tokenizer_dir, workers):
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
        "2",
        "--backoff",
        "0.05",
        "--concurrency",
        "2",
        "--shard-samples",
        "7",
        "--split",
        "0.6,0.2,0.2",
        "--workers",
        str(workers),
        "--no-progress",
        "--json",
    ]


def _keys(out):
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    urls = [str(out / "shards" / s["name"]) for s in manifest["shards"]]
    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_and_resume_is_byte_identical(
    mirror_factory, nxml_dir, tokenizer_dir, tmp_path, capsys
):
    mirror = mirror_factory(real_corpus(nxml_dir, copies=3))  # 24 articles, 51 figures
    # the uninterrupted reference, in this process, one worker
    ref = tmp_path / "ref"
    assert main(_args(mirror, ref, tokenizer_dir, 1)) == 0
    capsys.readouterr()
    ref_keys = _keys(ref)
    assert len(ref_keys) == 51 == len(set(ref_keys))

    # the killed run: a subprocess with slow downloads, SIGKILLed once a few articles are paired
    mirror.httpd.delay_s = 0.06  # ~0.5 s per package, 2 at a time: ~6 s of downloading
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "biomedclip.cli.main", *_args(mirror, out, tokenizer_dir, 2)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "paired").rglob("*.tar"))) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"build ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its worker processes
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    paired_at_kill = len(list((out / "paired").rglob("*.tar")))
    assert 4 <= paired_at_kill < 24
    assert not (out / "shards" / "manifest.json").exists()

    # rerun (full speed, two workers): resumes and matches the reference byte for byte
    mirror.httpd.delay_s = 0.0
    n_before = len(mirror.httpd.log)
    assert main(_args(mirror, out, tokenizer_dir, 2)) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert run["cached"] >= paired_at_kill  # finished articles were not redone
    refetched = [p for p, _ in mirror.httpd.log[n_before:] if p.endswith(".tar.gz")]
    assert len(refetched) <= 24 - paired_at_kill
    assert shard_bytes(out) == shard_bytes(ref)
    keys = _keys(out)
    assert keys == ref_keys and len(keys) == len(set(keys))
    assert not list(out.rglob("*.tmp"))
