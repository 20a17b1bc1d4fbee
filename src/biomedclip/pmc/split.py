"""Stage ``split``: deduplicate and assign each article to train/val/test by a hash of its PMCID.

The whole article goes to one split, so no article spans two. The plan (one JSON line per article,
in PMCID order: split, kept keys, duplicates dropped) is what the write stage turns into shards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from biomedclip.io_utils import atomic_open
from biomedclip.pmc.config import SPLITS, SplitConfig
from biomedclip.pmc.dedup import Deduplicator
from biomedclip.pmc.state import read_paired_meta


def assign_split(article_id: str, fractions: tuple[float, float, float], salt: str = "") -> str:
    """Deterministic split of an article from the SHA-256 of ``salt:article_id``."""
    u = int(hashlib.sha256(f"{salt}:{article_id}".encode()).hexdigest()[:16], 16) / 2**64
    acc = 0.0
    for name, frac in zip(SPLITS, fractions):
        acc += frac
        if u < acc:
            return name
    return next(name for name, frac in reversed(list(zip(SPLITS, fractions))) if frac > 0)


def plan_articles(paired_files: Iterable[tuple[str, Path]], cfg: SplitConfig) -> Iterator[dict]:
    """Plan lines for ``(article_id, paired result)`` in the given (sorted) order."""
    dedup = Deduplicator(cfg.phash_distance)
    for article_id, path in paired_files:
        meta = read_paired_meta(path)
        keep, dups = [], []
        for p in meta["pairs"]:
            hit = dedup.check(p["key"], p["sha256"], p["phash"])
            if hit is None:
                keep.append(p["key"])
            else:
                dups.append({"key": p["key"], "reason": hit[0], "of": hit[1]})
        yield {
            "article": article_id,
            "split": assign_split(article_id, cfg.fractions, cfg.salt),
            "keep": keep,
            "duplicates": dups,
        }


def write_plan(lines: Iterable[dict], path: Path) -> dict:
    """Write the plan atomically; returns counts per split and duplicates."""
    counts = {"articles": {s: 0 for s in SPLITS}, "pairs": {s: 0 for s in SPLITS}}
    dup_counts: dict[str, int] = {}
    digest = hashlib.sha256()
    with atomic_open(path, "w") as f:
        for line in lines:
            text = json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n"
            f.write(text)
            digest.update(text.encode())
            counts["articles"][line["split"]] += 1
            counts["pairs"][line["split"]] += len(line["keep"])
            for d in line["duplicates"]:
                dup_counts[d["reason"]] = dup_counts.get(d["reason"], 0) + 1
    counts["duplicates"] = dict(sorted(dup_counts.items()))
    counts["digest"] = digest.hexdigest()
    return counts


def read_plan(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
