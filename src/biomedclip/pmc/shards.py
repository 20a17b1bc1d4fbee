"""Stage ``write``: the plan to WebDataset tar shards, byte-deterministic and resumable.

Layout (all in ``<out>/shards/``)::

    train-000000.tar ...  val-000000.tar ...  test-000000.tar ...
    sizes.json            {shard file name: number of samples}  (open_clip / webdataset convention)
    manifest.json         splits, shard list with sample counts, bytes and SHA-256, field docs

Each sample is ``<key>.jpg`` (RGB JPEG), ``<key>.txt`` (caption, UTF-8) and ``<key>.json``
(pmcid, pmid, doi, journal, year, license, fig_id, label, split, ...). Shards are filled in plan
order up to ``shard_samples`` samples or ``shard_bytes`` bytes. A finished shard is renamed into
place and recorded in ``.done/``; a rerun skips shards already written from the same plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from biomedclip.io_utils import add_tar_member, atomic_open, atomic_write_json, tar_writer
from biomedclip.pmc.config import SPLITS, WriteConfig
from biomedclip.pmc.split import read_plan
from biomedclip.pmc.state import WorkDir, read_paired_images, read_paired_meta

SHARD_RE = re.compile(r"^(train|val|test)-\d{6}\.tar$")
TAR_BLOCK = 512
FIELDS = {
    "jpg": "RGB JPEG, longest side <= max_side",
    "txt": "figure caption (title + paragraphs, whitespace normalised), UTF-8",
    "json": "pmcid, pmid, doi, journal, year, license, article_type, fig_id, label, split, "
    "caption_tokens, width, height, orig_width, orig_height, graphic",
}


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _member_size(n: int) -> int:
    return TAR_BLOCK + -(-n // TAR_BLOCK) * TAR_BLOCK


def sample_members(key: str, caption: str, jpeg: bytes, meta: dict) -> list[tuple[str, bytes]]:
    return [
        (f"{key}.jpg", jpeg),
        (f"{key}.txt", caption.encode("utf-8")),
        (f"{key}.json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")),
    ]


def _samples(work: WorkDir, split: str, skip: int) -> Iterator[list[tuple[str, bytes]]]:
    """The split's samples in plan order, after skipping the first ``skip`` without reading them."""
    for line in read_plan(work.plan_file):
        if line["split"] != split or not line["keep"]:
            continue
        if skip >= len(line["keep"]):
            skip -= len(line["keep"])
            continue
        path = work.paired(line["article"])
        meta = read_paired_meta(path)
        images = read_paired_images(path)
        by_key = {p["key"]: p for p in meta["pairs"]}
        for key in line["keep"][skip:]:
            p = by_key[key]
            sample_meta = {
                **meta["meta"],
                "fig_id": p["fig_id"],
                "label": p["label"],
                "split": split,
                "caption_tokens": p["caption_tokens"],
                "width": p["width"],
                "height": p["height"],
                "orig_width": p["orig_width"],
                "orig_height": p["orig_height"],
                "graphic": p["member"],
            }
            yield sample_members(key, p["caption"], images[key], sample_meta)
        skip = 0


class _Shard:
    """A shard being filled: written through :func:`atomic_open`, renamed into place on close."""

    def __init__(self, path: Path):
        self.path = path
        self._stack = contextlib.ExitStack()
        self.f = self._stack.enter_context(atomic_open(path, "wb"))
        self.tf = tar_writer(self.f)
        self.samples = 0
        self.bytes = 0

    def add(self, members: list[tuple[str, bytes]]) -> None:
        for name, data in members:
            add_tar_member(self.tf, name, data)
            self.bytes += _member_size(len(data))
        self.samples += 1

    def close(self) -> tuple[int, str]:
        self.tf.close()
        self._stack.close()  # fsync + rename
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return self.path.stat().st_size, h.hexdigest()


def write_shards(work: WorkDir, cfg: WriteConfig, plan_digest: str, progress=None) -> dict:
    """Write (or finish writing) every split's shards; returns the manifest."""
    out = work.shards_dir
    done_dir = out / ".done"
    done_dir.mkdir(parents=True, exist_ok=True)
    settings = {"plan": plan_digest, **asdict(cfg)}
    records: list[dict] = []
    for split in SPLITS:
        pos, index = 0, 0
        while True:  # skip shards already written from this plan
            name = shard_name(split, index)
            rec_path = done_dir / f"{name}.json"
            if not rec_path.is_file():
                break
            rec = json.loads(rec_path.read_text())
            path = out / name
            if (
                rec.get("settings") != settings
                or rec.get("start") != pos
                or not path.is_file()
                or (path.stat().st_size != rec["bytes"])
            ):
                break
            records.append(rec)
            pos, index = rec["end"], index + 1
        shard: _Shard | None = None
        for members in _samples(work, split, pos):
            size = sum(_member_size(len(d)) for _, d in members)
            if shard is not None and (
                shard.samples >= cfg.shard_samples or shard.bytes + size > cfg.shard_bytes
            ):
                records.append(_finish(shard, split, index, pos, settings, done_dir))
                pos += shard.samples
                index += 1
                shard = None
            if shard is None:
                shard = _Shard(out / shard_name(split, index))
            shard.add(members)
            if progress:
                progress(1)
        if shard is not None:
            records.append(_finish(shard, split, index, pos, settings, done_dir))
    names = {r["name"] for r in records}
    for p in out.iterdir():  # shards of an earlier, different plan
        if SHARD_RE.match(p.name) and p.name not in names:
            p.unlink()
    for p in done_dir.iterdir():
        if p.name.removesuffix(".json") not in names:
            p.unlink()
    return _manifest(work, records, plan_digest, cfg)


def _finish(
    shard: _Shard, split: str, index: int, start: int, settings: dict, done_dir: Path
) -> dict:
    nbytes, sha = shard.close()
    rec = {
        "name": shard.path.name,
        "split": split,
        "index": index,
        "samples": shard.samples,
        "bytes": nbytes,
        "sha256": sha,
        "start": start,
        "end": start + shard.samples,
        "settings": settings,
    }
    atomic_write_json(done_dir / f"{shard.path.name}.json", rec)
    return rec


def _manifest(work: WorkDir, records: list[dict], plan_digest: str, cfg: WriteConfig) -> dict:
    splits = {}
    for split in SPLITS:
        recs = [r for r in records if r["split"] == split]
        splits[split] = {
            "shards": len(recs),
            "samples": sum(r["samples"] for r in recs),
            "bytes": sum(r["bytes"] for r in recs),
            "pattern": f"{split}-{{000000..{len(recs) - 1:06d}}}.tar" if recs else None,
        }
    manifest = {
        "format": "webdataset",
        "version": 1,
        "plan_digest": plan_digest,
        "write": asdict(cfg),
        "fields": FIELDS,
        "splits": splits,
        "shards": [
            {k: r[k] for k in ("name", "split", "samples", "bytes", "sha256")} for r in records
        ],
    }
    atomic_write_json(work.shards_dir / "manifest.json", manifest)
    atomic_write_json(work.shards_dir / "sizes.json", {r["name"]: r["samples"] for r in records})
    return manifest
