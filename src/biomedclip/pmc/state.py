"""The work directory and the per-article state kept in it.

An article's state is the set of its result files, each written atomically (temp file + rename):

    list/articles.jsonl                    selected articles (list stage)
    packages/<b>/<PMCID>.tar.gz(.part)     downloaded package (.part while incomplete; resumable)
    fetch_failed/<b>/<PMCID>.json          last fetch failure (retried by the next run)
    extract/<b>/<PMCID>.json               article metadata + figures (extract stage)
    paired/<b>/<PMCID>.tar                 meta.json + one processed JPEG per kept pair (pair stage)
    quarantine/<b>/<PMCID>.json            why the article was set aside (broken package, bad XML)
    plan.jsonl, shards/, report/           global stages (split, write, report)

``<b>`` is a 3-hex-digit bucket of the PMCID, so no folder grows beyond a few thousand files.
A killed run leaves at most temporary files, which are ignored and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from biomedclip.io_utils import atomic_write_json

PENDING, FETCHED, EXTRACTED, PAIRED, QUARANTINED = (
    "pending",
    "fetched",
    "extracted",
    "paired",
    "quarantined",
)


def bucket(article_id: str) -> str:
    return hashlib.sha1(article_id.encode()).hexdigest()[:3]


@dataclass(frozen=True)
class WorkDir:
    """Paths of every stage's outputs under one root."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ---- global files ------------------------------------------------------------------------
    @property
    def list_file(self) -> Path:
        return self.root / "list" / "articles.jsonl"

    @property
    def list_summary(self) -> Path:
        return self.root / "list" / "summary.json"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.jsonl"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    # ---- per-article files -------------------------------------------------------------------
    def _p(self, kind: str, article_id: str, suffix: str) -> Path:
        return self.root / kind / bucket(article_id) / f"{article_id}{suffix}"

    def package(self, article_id: str) -> Path:
        return self._p("packages", article_id, ".tar.gz")

    def fetch_failed(self, article_id: str) -> Path:
        return self._p("fetch_failed", article_id, ".json")

    def extracted(self, article_id: str) -> Path:
        return self._p("extract", article_id, ".json")

    def paired(self, article_id: str) -> Path:
        return self._p("paired", article_id, ".tar")

    def quarantine(self, article_id: str) -> Path:
        return self._p("quarantine", article_id, ".json")

    # ---- state -------------------------------------------------------------------------------
    def status(self, article_id: str, pair_digest: str | None = None) -> str:
        """How far the article got. A pair result made with other settings counts as not paired."""
        if self.quarantine(article_id).is_file():
            return QUARANTINED
        paired = self.paired(article_id)
        if paired.is_file() and (
            pair_digest is None or read_paired_meta(paired).get("settings") == pair_digest
        ):
            return PAIRED
        if self.extracted(article_id).is_file():
            return EXTRACTED
        if self.package(article_id).is_file():
            return FETCHED
        return PENDING

    def write_quarantine(self, article_id: str, stage: str, reason: str, detail: str) -> None:
        atomic_write_json(
            self.quarantine(article_id),
            {"article": article_id, "stage": stage, "reason": reason, "detail": detail},
        )

    def read_quarantine(self, article_id: str) -> dict | None:
        p = self.quarantine(article_id)
        return json.loads(p.read_text()) if p.is_file() else None

    def remove_stale_temp_files(self) -> int:
        """Delete temporary files a killed run left behind (``.<name>.<random>.tmp`` from atomic
        writes). Partial downloads (``.part``) are kept: they resume. One run per work dir."""
        removed = 0
        for kind in ("extract", "paired", "quarantine", "fetch_failed", "list", "shards", "report"):
            for dirpath, _, files in os.walk(self.root / kind):
                for name in files:
                    if name.startswith(".") and name.endswith(".tmp"):
                        Path(dirpath, name).unlink(missing_ok=True)
                        removed += 1
        return removed

    def clear_article(self, article_id: str) -> None:
        """Forget an article's extract/pair/quarantine results (used with ``--redo``)."""
        for p in (self.extracted(article_id), self.paired(article_id), self.quarantine(article_id)):
            p.unlink(missing_ok=True)


def read_paired_meta(path: Path) -> dict:
    """The ``meta.json`` (first member) of a per-article pair result."""
    with tarfile.open(path, "r:") as tf:
        member = tf.next()
        if member is None or member.name != "meta.json":
            raise ValueError(f"{path}: not a pair result (no leading meta.json)")
        f = tf.extractfile(member)
        assert f is not None
        return json.loads(f.read())


def read_paired_images(path: Path) -> dict[str, bytes]:
    """``{key: jpeg bytes}`` of a per-article pair result."""
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if m.name.endswith(".jpg"):
                f = tf.extractfile(m)
                assert f is not None
                out[m.name[: -len(".jpg")]] = f.read()
    return out
