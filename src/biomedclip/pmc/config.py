"""Typed configuration of the PMC pipeline, one dataclass per stage plus the whole build."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from biomedclip.errors import ConfigError

PMC_OA_BASE = "https://ftp.ncbi.nlm.nih.gov/pub/pmc/"
SPLITS = ("train", "val", "test")


@dataclass
class ListConfig:
    """Which articles of the OA file list to take."""

    file_list: str | None = None  # path or URL; default: <mirror>/oa_file_list.csv
    local_dir: str | None = None  # instead of a list: a folder of packages / article folders
    licenses: tuple[str, ...] = ()  # e.g. ("CC BY", "CC0"); case-insensitive; empty = all
    updated_from: date | None = None  # "Last Updated" range (inclusive)
    updated_to: date | None = None
    year_from: int | None = None  # publication year from the citation (inclusive)
    year_to: int | None = None
    journals: tuple[str, ...] = ()  # journal abbreviations as in the citation; case-insensitive
    sample: int | None = None  # deterministic sample of this many articles
    seed: int = 0


@dataclass
class FetchConfig:
    """How packages are downloaded."""

    mirror: str = PMC_OA_BASE
    concurrency: int = 4
    retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    max_bytes: int = 2 * 1024**3


@dataclass
class PairConfig:
    """Image conversion and pair filters."""

    max_side: int = 512
    min_side: int = 32
    jpeg_quality: int = 90
    max_pixels: int = 178_956_970  # Pillow's decompression-bomb limit
    min_caption_tokens: int = 5  # incl. [CLS] and [SEP]
    max_caption_tokens: int = 0  # 0 = no upper bound (training truncates)
    tokenizer_dir: str | None = None  # default: the released model's tokenizer


@dataclass
class SplitConfig:
    """Deduplication and train/val/test assignment."""

    fractions: tuple[float, float, float] = (0.94, 0.01, 0.05)
    salt: str = "biomedclip-pmc"
    phash_distance: int = 4  # near-duplicate if the 64-bit perceptual hashes differ in <= bits


@dataclass
class WriteConfig:
    """Shard sizes."""

    shard_samples: int = 10_000
    shard_bytes: int = 1024**3


@dataclass
class BuildConfig:
    """The whole pipeline: stages, engine and work directory."""

    out: Path = Path("pmc-build")
    listing: ListConfig = field(default_factory=ListConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    engine: str = "local"  # local | ray
    workers: int = 0  # 0 = all cores
    ray_address: str | None = None

    def validate(self) -> BuildConfig:
        fr = self.split.fractions
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions {fr}: need three non-negative numbers summing to 1")
        if self.pair.max_side < 16 or self.pair.min_side < 1:
            raise ConfigError("max side must be >= 16 and min side >= 1")
        if (
            self.pair.max_caption_tokens
            and self.pair.max_caption_tokens < self.pair.min_caption_tokens
        ):
            raise ConfigError("max caption tokens is below min caption tokens")
        if self.write.shard_samples < 1 or self.write.shard_bytes < 1024:
            raise ConfigError("shard size must be >= 1 sample and >= 1 KiB")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"engine {self.engine!r}: expected 'local' or 'ray'")
        if self.fetch.concurrency < 1 or self.fetch.retries < 0:
            raise ConfigError("fetch concurrency must be >= 1 and retries >= 0")
        return self


def pair_digest(cfg: PairConfig) -> str:
    """A digest of the settings that change per-article pair outputs (resume only reuses matches)."""
    d = dataclasses.asdict(cfg)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
