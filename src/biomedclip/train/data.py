"""Training data: WebDataset shards or a CSV / Parquet table -> batches of (pixels, tokens).

Samples are read as *raw* records first (a tar member's offsets, or a table row; see
:mod:`biomedclip.train.sources`, which also decodes them) and decoded only when they are used, so
resuming skips consumed batches without decoding anything.

* **Shards** (``.tar``; per sample ``KEY.jpg``/``KEY.png`` + ``KEY.txt`` + ``KEY.json``, as the PMC
  pipeline writes them): each (rank, dataloader worker) *stream* reads its own subset. Epoch mode
  shuffles the shard list per epoch and splits it by node and worker (by sample when there are fewer
  shards than streams); resampled mode draws shards with replacement. A seeded shuffle buffer follows.
* **Tables** (``.csv``/``.tsv``/``.parquet``): a seeded permutation per epoch; global batch ``j``
  is rows ``perm[j*G:(j+1)*G]`` and rank ``r`` takes its ``B``-row slice, so ``W`` processes x ``B``
  see exactly the pairs that 1 process x ``W*B`` sees.

Per-rank batch ``g`` is built by the worker in role ``g % num_workers`` (the DataLoader's
round-robin order; roles are rotated on resume so that the first worker asked owns the next batch),
and each sample's augmentation uses its own seeded RNG: the batch sequence is a pure function of the
seed and the position, which is what makes resume exact. Bad samples (undecodable image, missing or
empty caption) are skipped and counted; a batch then comes out short.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from biomedclip.errors import ConfigError
from biomedclip.tokenizer import Tokenizer
from biomedclip.train.sources import (
    BadSample,
    Decoder,
    RawSample,
    detect_format,
    index_shard,
    read_table,
    resolve_shards,
    sample_seed,
    seeded_transform,
)

# the raw-sample names stay importable from here (tests, the embedding sources)
__all__ = [
    "PairStream",
    "RawSample",
    "StreamSpec",
    "eval_batches",
    "index_shard",
    "iter_eval_samples",
    "make_loader",
    "make_spec",
    "read_table",
    "resolve_shards",
]

log = logging.getLogger(__name__)


# ---- streams of raw batches ----------------------------------------------------------------


@dataclass
class StreamSpec:
    """What one process reads."""

    samples: list[RawSample] | None  # a table
    shards: list[str] | None  # or shards
    batch_size: int  # per process
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    resampled: bool = False
    shuffle_buffer: int = 1000


def _table_batches(
    spec: StreamSpec, worker: int, n_workers: int, start: int
) -> Iterator[tuple[int, list[tuple[int, RawSample]]]]:
    """(global batch index, [(sample id, raw)]) of this rank, endless, from batch ``start``."""
    assert spec.samples is not None
    n = len(spec.samples)
    per_global = spec.batch_size * spec.world_size
    per_epoch = n // per_global
    if per_epoch == 0:
        raise ConfigError(f"the table has {n} rows, fewer than one global batch ({per_global})")
    g = start + ((worker - start) % n_workers)
    perm_epoch, perm = -1, None
    while True:
        epoch, j = divmod(g, per_epoch)
        if epoch != perm_epoch:
            perm = np.random.default_rng([spec.seed, epoch]).permutation(n)
            perm_epoch = epoch
        lo = j * per_global + spec.rank * spec.batch_size
        ids = perm[lo : lo + spec.batch_size]
        yield g, [(epoch * n + int(i), spec.samples[int(i)]) for i in ids]
        g += n_workers


def _shard_samples(spec: StreamSpec, stream: int, n_streams: int) -> Iterator[RawSample]:
    """Endless raw samples of one stream (epochs or resampled shards)."""
    assert spec.shards is not None
    shards = spec.shards
    if spec.resampled:
        rng = np.random.default_rng([spec.seed, stream, 1])
        while True:
            yield from index_shard(shards[int(rng.integers(len(shards)))])
    epoch = 0
    while True:
        order = [
            shards[i] for i in np.random.default_rng([spec.seed, epoch]).permutation(len(shards))
        ]
        produced = 0
        if len(order) >= n_streams:
            for shard in order[stream::n_streams]:
                for s in index_shard(shard):
                    produced += 1
                    yield s
        else:  # fewer shards than streams: split by sample
            k = 0
            for shard in order:
                for s in index_shard(shard):
                    if k % n_streams == stream:
                        produced += 1
                        yield s
                    k += 1
        if produced == 0:
            raise ConfigError(
                f"data stream {stream} of {n_streams} got no samples from {len(shards)} shard(s): "
                "use fewer workers/processes or more shards"
            )
        epoch += 1


def _shuffled(
    items: Iterator[RawSample], size: int, rng: np.random.Generator
) -> Iterator[RawSample]:
    if size <= 1:
        yield from items
        return
    buf: list[RawSample] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    while buf:  # unreachable for endless streams; kept for finite inputs
        i = int(rng.integers(len(buf)))
        buf[i], buf[-1] = buf[-1], buf[i]
        yield buf.pop()


def _shard_batches(
    spec: StreamSpec, worker: int, n_workers: int, start: int
) -> Iterator[tuple[int, list[tuple[int, RawSample]]]]:
    stream = spec.rank * n_workers + worker
    n_streams = spec.world_size * n_workers
    rng = np.random.default_rng([spec.seed, stream, 2])
    samples = _shuffled(_shard_samples(spec, stream, n_streams), spec.shuffle_buffer, rng)
    local = 0  # this worker's batch counter; its batch ``local`` is global batch worker + local*W
    index = 0
    while True:
        batch = []
        for _ in range(spec.batch_size):
            batch.append((stream * (1 << 40) + index, next(samples)))
            index += 1
        g = worker + local * n_workers
        local += 1
        if g >= start:
            yield g, batch


class PairStream(IterableDataset):
    """Endless per-process batches ``{"pixels", "input_ids", "attention_mask", "n_bad", "index"}``."""

    def __init__(
        self,
        spec: StreamSpec,
        transform: Callable,
        tokenizer: Tokenizer,
        context_length: int,
        start_batch: int = 0,
    ):
        super().__init__()
        self.spec = spec
        self.transform = transform
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.start_batch = start_batch

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        # The DataLoader asks worker 0 first: after a resume at batch ``start`` worker 0 must play
        # the role of the one that owns batch ``start`` (roles are what fix shards and order).
        role = (worker + self.start_batch) % n_workers
        make = _table_batches if self.spec.samples is not None else _shard_batches
        decode = Decoder()
        for g, raws in make(self.spec, role, n_workers, self.start_batch):
            images, captions, bad = [], [], 0
            for sid, raw in raws:
                try:
                    image, caption, _ = decode(raw)
                    images.append(
                        seeded_transform(self.transform, image, sample_seed(self.spec.seed, 0, sid))
                    )
                    captions.append(caption)
                except BadSample as e:
                    bad += 1
                    log.warning("skipped sample: %s", e)
            if not images:
                yield {"index": g, "n_bad": bad, "pixels": None}
                continue
            tokens = self.tokenizer(captions, context_length=self.context_length, warn=False)
            yield {
                "index": g,
                "n_bad": bad,
                "pixels": torch.stack(images),
                "input_ids": tokens.input_ids,
                "attention_mask": tokens.attention_mask,
            }


def make_spec(data_cfg, batch_size: int, rank: int, world: int, seed: int) -> StreamSpec:
    """A :class:`StreamSpec` from the ``data`` config section (training split)."""
    if not data_cfg.train:
        raise ConfigError("data.train is not set (shards or a .csv/.parquet table)")
    fmt = detect_format(data_cfg.train, data_cfg.format)
    if fmt in ("csv", "parquet"):
        if isinstance(data_cfg.train, list):
            samples = [
                s
                for t in data_cfg.train
                for s in read_table(
                    t, fmt, data_cfg.image_column, data_cfg.caption_column, data_cfg.root
                )
            ]
        else:
            samples = read_table(
                data_cfg.train, fmt, data_cfg.image_column, data_cfg.caption_column, data_cfg.root
            )
        return StreamSpec(samples, None, batch_size, rank, world, seed)
    return StreamSpec(
        None,
        resolve_shards(data_cfg.train),
        batch_size,
        rank,
        world,
        seed,
        data_cfg.resampled,
        data_cfg.shuffle_buffer,
    )


def make_loader(
    spec: StreamSpec,
    transform: Callable,
    tokenizer: Tokenizer,
    context_length: int,
    workers: int,
    start_batch: int = 0,
    seed: int = 0,
) -> DataLoader:
    ds = PairStream(spec, transform, tokenizer, context_length, start_batch)
    return DataLoader(
        ds,
        batch_size=None,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


# ---- validation ----------------------------------------------------------------------------


def iter_eval_samples(data_cfg, spec: str | list[str], max_samples: int) -> Iterator[RawSample]:
    """The first ``max_samples`` raw samples of a held-out shard set or table, in order."""
    fmt = detect_format(spec, data_cfg.format)
    if fmt in ("csv", "parquet"):
        tables = spec if isinstance(spec, list) else [spec]
        sources: Iterator[RawSample] = (
            s
            for t in tables
            for s in read_table(
                t, fmt, data_cfg.image_column, data_cfg.caption_column, data_cfg.root
            )
        )
    else:
        sources = (s for shard in resolve_shards(spec) for s in index_shard(shard))
    for n, s in enumerate(sources):
        if n >= max_samples:
            return
        yield s


def eval_batches(
    data_cfg,
    spec,
    transform: Callable,
    tokenizer: Tokenizer,
    context_length: int,
    batch_size: int,
    max_samples: int,
) -> Iterator[dict[str, Any]]:
    """Decoded validation batches (deterministic transform); bad samples skipped and counted."""
    decode = Decoder()
    images, captions, labels, bad = [], [], [], 0

    def flush():
        tokens = tokenizer(captions, context_length=context_length, warn=False)
        return {
            "pixels": torch.stack(images),
            "input_ids": tokens.input_ids,
            "attention_mask": tokens.attention_mask,
            "labels": list(labels),
            "n_bad": bad,
        }

    for raw in iter_eval_samples(data_cfg, spec, max_samples):
        try:
            image, caption, meta = decode(raw)
        except BadSample as e:
            bad += 1
            log.warning("skipped validation sample: %s", e)
            continue
        images.append(transform(image))
        captions.append(caption)
        labels.append(meta.get("label"))
        if len(images) == batch_size:
            yield flush()
            images, captions, labels, bad = [], [], [], 0
    if images:
        yield flush()
    elif bad:
        yield {"pixels": None, "n_bad": bad}
