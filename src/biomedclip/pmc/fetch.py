"""Stage ``fetch``: download article packages with retries, backoff and resumable partial files.

A package is downloaded to ``<name>.part``; an interrupted download resumes with an HTTP ``Range``
request. When complete, its size (``Content-Length``/``Content-Range``, or the list's size) and MD5
(when the list has one) are checked and it must start with the gzip magic; only then is it renamed
into place. Client errors (404) fail at once; network errors and 5xx are retried with exponential
backoff. Failures are recorded per article and retried by the next run; they never stop the job.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urljoin

from biomedclip.io_utils import atomic_write_json
from biomedclip.pmc.config import FetchConfig
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.state import WorkDir

log = logging.getLogger(__name__)
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
USER_AGENT = "biomedclip-pmc/0.1 (+https://github.com/)"


class FetchError(Exception):
    """A download failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


@dataclass
class FetchResult:
    article: str
    status: str  # ok | cached | local | failed
    bytes: int = 0
    attempts: int = 0
    reason: str = ""


def package_url(mirror: str, file: str) -> str:
    return urljoin(mirror if mirror.endswith("/") else mirror + "/", file.lstrip("/"))


def open_url(url: str, timeout: float, headers: dict | None = None):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)


def download(
    url: str,
    dest: Path,
    cfg: FetchConfig,
    expect_size: int | None = None,
    md5: str = "",
    check_gzip: bool = True,
) -> int:
    """Download ``url`` to ``dest`` (via ``dest.part``, resuming it); returns the size in bytes."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = open_url(url, cfg.timeout_s, headers)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # our partial file is already complete (or bogus): restart
            part.unlink(missing_ok=True)
            raise FetchError(f"{url}: range not satisfiable; restarting", retry=True) from e
        raise FetchError(
            f"{url}: HTTP {e.code} {e.reason}", retry=e.code >= 500 or e.code == 429
        ) from e
    except (OSError, http.client.HTTPException) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}") from e
    with resp:
        total: int | None = None
        if resp.status == 206:
            crange = resp.headers.get("Content-Range", "")  # bytes a-b/total
            try:
                start = int(crange.split()[1].split("-")[0])
                total = int(crange.rsplit("/", 1)[1])
            except (IndexError, ValueError) as e:
                raise FetchError(f"{url}: bad Content-Range {crange!r}") from e
            if start != have:
                part.unlink(missing_ok=True)
                raise FetchError(f"{url}: server resumed at {start}, expected {have}")
            mode = "ab"
        else:  # 200: the server ignored Range (or we had nothing): start over
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > cfg.max_bytes:
            raise FetchError(
                f"{url}: {total} bytes exceeds the limit of {cfg.max_bytes}", retry=False
            )
        got = have
        with part.open(mode) as f:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    if got > cfg.max_bytes:
                        raise FetchError(
                            f"{url}: exceeds the limit of {cfg.max_bytes} bytes", retry=False
                        )
            except (OSError, http.client.HTTPException) as e:
                raise FetchError(f"{url}: connection lost after {got} bytes ({e})") from e
    expected = total if total is not None else expect_size
    if expected is not None and got != expected:
        if got > expected:
            part.unlink()
        raise FetchError(f"{url}: got {got} bytes, expected {expected}")
    if expect_size is not None and got != expect_size:
        part.unlink()
        raise FetchError(f"{url}: size {got} differs from the list's {expect_size}", retry=False)
    with part.open("rb") as f:
        head = f.read(2)
        if md5:
            digest = hashlib.md5(head, usedforsecurity=False)
            while chunk := f.read(CHUNK):
                digest.update(chunk)
            if digest.hexdigest() != md5:
                part.unlink()
                raise FetchError(f"{url}: MD5 mismatch (got {digest.hexdigest()}, expected {md5})")
    if check_gzip and head != GZIP_MAGIC:
        part.unlink()
        raise FetchError(f"{url}: not a gzip file", retry=False)
    os.replace(part, dest)
    return got


def fetch_article(ref: ArticleRef, work: WorkDir, cfg: FetchConfig) -> FetchResult:
    """Make the article's package available locally; never raises for a bad article."""
    if ref.is_local:
        return FetchResult(ref.pmcid, "local")
    dest = work.package(ref.pmcid)
    if dest.is_file():
        return FetchResult(ref.pmcid, "cached", dest.stat().st_size)
    url = package_url(cfg.mirror, ref.file)
    rng = random.Random(ref.pmcid)
    last = ""
    for attempt in range(1, cfg.retries + 2):
        try:
            size = download(url, dest, cfg, ref.size, ref.md5)
            work.fetch_failed(ref.pmcid).unlink(missing_ok=True)
            return FetchResult(ref.pmcid, "ok", size, attempt)
        except FetchError as e:
            last = str(e)
            log.info("fetch %s attempt %d: %s", ref.pmcid, attempt, e)
            if not e.retry or attempt > cfg.retries:
                break
            time.sleep(min(cfg.backoff_s * 2 ** (attempt - 1), 60.0) * (0.5 + rng.random()))
    result = FetchResult(ref.pmcid, "failed", 0, attempt, last)
    atomic_write_json(work.fetch_failed(ref.pmcid), asdict(result))
    return result


def fetch_file_list(source: str, dest_dir: Path, cfg: FetchConfig, refresh: bool = False) -> Path:
    """A local copy of the file list: ``source`` itself if it is a path, else downloaded once
    into ``dest_dir`` (kept for later runs unless ``refresh``)."""
    from biomedclip.errors import InputError

    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{source}: file list not found")
        return path
    dest = Path(dest_dir) / (Path(source.split("?", 1)[0]).name or "file_list.csv")
    if dest.is_file() and not refresh:
        return dest
    dest.unlink(missing_ok=True)
    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        try:
            download(source, dest, cfg, check_gzip=False)
            return dest
        except FetchError as e:
            last = e
            if not e.retry:
                break
            time.sleep(min(cfg.backoff_s * 2**attempt, 60.0))
    raise InputError(f"{source}: cannot download the file list ({last})")


def read_fetch_failure(work: WorkDir, article_id: str) -> dict | None:
    p = work.fetch_failed(article_id)
    return json.loads(p.read_text()) if p.is_file() else None
