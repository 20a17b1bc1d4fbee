"""Fetch stage against a local HTTP mirror: retries, 404, Range resume, size/checksum checks."""

from __future__ import annotations

import hashlib
import random

import pytest
from benchmarks._pmc_corpus import package_bytes, package_path

from biomedclip.pmc.config import FetchConfig
from biomedclip.pmc.fetch import FetchError, download, fetch_article
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.state import WorkDir


@pytest.fixture()
def mirror(mirror_factory):
    noise = random.Random(0).randbytes(100_000)  # incompressible
    data = package_bytes([("PMC1/a.nxml", b"<article/>"), ("PMC1/big.bin", noise)])
    return mirror_factory({"PMC1": data}), data


def _cfg(m, **kw):
    return FetchConfig(
        mirror=m.url, retries=kw.pop("retries", 3), backoff_s=0.01, timeout_s=10, **kw
    )


def test_fetch_ok_and_cached(mirror, tmp_path):
    m, data = mirror
    work = WorkDir(tmp_path / "w")
    ref = ArticleRef("PMC1", package_path("PMC1"))
    res = fetch_article(ref, work, _cfg(m))
    assert res.status == "ok" and res.bytes == len(data)
    assert work.package("PMC1").read_bytes() == data
    assert fetch_article(ref, work, _cfg(m)).status == "cached"


def test_retries_server_errors(mirror, tmp_path):
    m, data = mirror
    path = package_path("PMC1")
    m.httpd.fail[path] = [503, 500]
    work = WorkDir(tmp_path / "w")
    res = fetch_article(ArticleRef("PMC1", path), work, _cfg(m))
    assert res.status == "ok" and res.attempts == 3
    assert work.package("PMC1").read_bytes() == data


def test_not_found_fails_without_retry_and_is_recorded(mirror, tmp_path):
    m, _ = mirror
    work = WorkDir(tmp_path / "w")
    res = fetch_article(ArticleRef("PMC9", "oa_package/00/00/PMC9.tar.gz"), work, _cfg(m))
    assert res.status == "failed" and res.attempts == 1 and "404" in res.reason
    assert work.fetch_failed("PMC9").is_file()
    assert sum(p.endswith("PMC9.tar.gz") for p, _ in m.httpd.log) == 1


def test_gives_up_after_retries(mirror, tmp_path):
    m, _ = mirror
    path = package_path("PMC1")
    m.httpd.fail[path] = [503] * 10
    res = fetch_article(ArticleRef("PMC1", path), WorkDir(tmp_path / "w"), _cfg(m, retries=2))
    assert res.status == "failed" and res.attempts == 3 and "503" in res.reason


def test_resumes_partial_file_with_range(mirror, tmp_path):
    m, data = mirror
    path = package_path("PMC1")
    work = WorkDir(tmp_path / "w")
    m.httpd.cut[path] = len(data) // 3  # the first response breaks off after a third
    res = fetch_article(ArticleRef("PMC1", path), work, _cfg(m))
    assert res.status == "ok" and res.attempts == 2
    ranges = [r for p, r in m.httpd.log if p == path]
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 3}-"
    assert work.package("PMC1").read_bytes() == data
    assert not work.package("PMC1").with_name("PMC1.tar.gz.part").exists()


def test_existing_part_file_is_continued(mirror, tmp_path):
    m, data = mirror
    dest = tmp_path / "x.tar.gz"
    dest.with_name("x.tar.gz.part").write_bytes(data[:1000])
    assert download(m.url + package_path("PMC1"), dest, _cfg(m)) == len(data)
    assert dest.read_bytes() == data
    assert m.httpd.log[-1][1] == "bytes=1000-"


def test_checksum_and_size_checks(mirror, tmp_path):
    m, data = mirror
    url = m.url + package_path("PMC1")
    with pytest.raises(FetchError, match="MD5 mismatch"):
        download(url, tmp_path / "a.tar.gz", _cfg(m), md5="0" * 32)
    assert not (tmp_path / "a.tar.gz").exists()
    good = hashlib.md5(data).hexdigest()
    assert download(url, tmp_path / "b.tar.gz", _cfg(m), md5=good) == len(data)
    with pytest.raises(FetchError, match="differs from the list"):
        download(url, tmp_path / "c.tar.gz", _cfg(m), expect_size=len(data) + 5)
    with pytest.raises(FetchError, match="exceeds the limit"):
        download(url, tmp_path / "d.tar.gz", _cfg(m, max_bytes=100))


def test_not_gzip_rejected(mirror_factory, tmp_path):
    m = mirror_factory({"PMC2": b"<html>error page</html>"})
    res = fetch_article(ArticleRef("PMC2", package_path("PMC2")), WorkDir(tmp_path / "w"), _cfg(m))
    assert res.status == "failed" and "not a gzip" in res.reason and res.attempts == 1
