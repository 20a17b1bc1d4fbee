"""The local embedding engine: images decoded by DataLoader workers while the model runs, texts
bucketed by length, results streamed into a sink (a Parquet dataset or memory)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from biomedclip.embedding.batching import (
    Failure,
    ImageBatchStream,
    identity_collate,
    text_batches,
)
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.sources import Item, Source
from biomedclip.embedding.store import STORAGE_DTYPES, DatasetInfo, EmbeddingWriter
from biomedclip.errors import ConfigError
from biomedclip.imaging.reader import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)
MODALITIES = ("auto", "image", "text", "both")


@dataclass
class EmbedConfig:
    """How to run an embedding job (see ``biomedclip embed --help``)."""

    batch_size: int = 64
    text_batch_size: int = 256
    token_budget: int | None = None
    num_workers: int | None = None  # None: see workers()
    precision: str = "fp32"
    compile: bool = False
    backend: str = "torch"  # or onnx-int8: the CPU int8 image fast path
    storage_dtype: str = "float32"
    modality: str = "auto"
    rows_per_part: int = 50_000  # rows per compacted part file
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    progress: bool = True
    text_chunk: int = 16384

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality {self.modality!r}: use one of {', '.join(MODALITIES)}")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ConfigError(f"storage dtype {self.storage_dtype!r}: use float32 or float16")
        if self.batch_size < 1 or self.text_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")
        EncoderSettings(self.precision, backend=self.backend)  # validates

    def workers(self) -> int:
        """Decoding processes: one per core beyond the model's, at most 8. On 2 cores or fewer
        decoding stays inline: a worker would preempt the model's threads more than it saves."""
        if self.num_workers is not None:
            return max(0, self.num_workers)
        cores = os.cpu_count() or 1
        return 0 if cores <= 2 else min(8, cores - 1)


@dataclass
class EmbedStats:
    images: int = 0
    texts: int = 0
    failed: int = 0
    skipped: int = 0
    truncated_texts: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        return self.images + self.texts

    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


class Sink(Protocol):
    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None: ...
    def add_failures(self, failures: Sequence[Failure]) -> None: ...


def modalities_for(source: Source, modality: str) -> list[str]:
    """Which modalities a job embeds: ``auto`` is images when the source has them, else texts."""
    if modality == "auto":
        return ["image"] if source.has_images else ["text"]
    want = ["image", "text"] if modality == "both" else [modality]
    for m in want:
        if m == "image" and not source.has_images:
            raise ConfigError(f"{source.description}: has no images to embed")
        if m == "text" and not source.has_texts:
            raise ConfigError(f"{source.description}: has no texts to embed")
    return want


def _progress(total: int | None, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        disable=not enabled,
        unit=unit,
        dynamic_ncols=True,
        smoothing=0.1,
        desc="embedding",
    )


def run_local(
    model: torch.nn.Module,
    preprocess: Callable,
    tokenizer,
    source: Source,
    cfg: EmbedConfig,
    sink: Sink,
    skip: dict[str, frozenset[str]] | None = None,
) -> EmbedStats:
    """Embed every item of ``source`` not in ``skip[modality]`` and hand results to ``sink``."""
    skip = skip or {}
    mods = modalities_for(source, cfg.modality)
    encoder = Encoder(model, EncoderSettings(cfg.precision, cfg.compile, cfg.backend))
    stats = EmbedStats()
    t0 = time.perf_counter()

    def record(failures: list[Failure]) -> None:
        if failures:
            sink.add_failures(failures)
            stats.failed += len(failures)
            stats.failures.extend(failures)

    def encode_texts(items: list[Item]) -> None:
        batches, failures = text_batches(tokenizer, items, cfg.text_batch_size, cfg.token_budget)
        record(failures)
        for b in batches:
            sink.add(b.items, "text", encoder.encode_texts(b.input_ids, b.attention_mask))
            stats.texts += len(b.items)
            stats.truncated_texts += b.truncated

    if "image" in mods:
        image_skip = skip.get("image", frozenset())
        text_skip = skip.get("text", frozenset())
        total = None
        if source.sized:
            total = sum(1 for it in source.items() if it.id not in image_skip)
            stats.skipped = len(source) - total
        stream = ImageBatchStream(source, preprocess, cfg.batch_size, image_skip, cfg.max_pixels)
        workers = cfg.workers() if total is None or total > cfg.batch_size else 0
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            collate_fn=identity_collate,
            pin_memory=encoder.device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )
        with _progress(total, cfg.progress, "img") as bar:
            for batch in loader:
                record(batch.failures)
                if batch.pixels is not None:
                    sink.add(batch.items, "image", encoder.encode_images(batch.pixels))
                    stats.images += len(batch.items)
                if "text" in mods:
                    pending = [it for it in batch.items if it.id not in text_skip]
                    pending += [
                        it
                        for it in batch.failed_items
                        if it.id not in text_skip and it.text is not None
                    ]
                    if pending:
                        encode_texts(pending)
                bar.update(len(batch.items) + len(batch.failures))
    else:
        text_skip = skip.get("text", frozenset())
        pending_iter = (it for it in source.items() if it.id not in text_skip)
        total = None
        if source.sized:
            total = sum(1 for it in source.items() if it.id not in text_skip)
            stats.skipped = len(source) - total
        with _progress(total, cfg.progress, "text") as bar:
            chunk: list[Item] = []
            for it in pending_iter:
                chunk.append(it)
                if len(chunk) >= cfg.text_chunk:
                    encode_texts(chunk)
                    bar.update(len(chunk))
                    chunk = []
            if chunk:
                encode_texts(chunk)
                bar.update(len(chunk))
    stats.seconds = time.perf_counter() - t0
    return stats


# ---- sinks ----------------------------------------------------------------------------------------
class MemorySink:
    """Collects embeddings in memory (for the Python API and small CLI runs)."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        self.items: dict[tuple[str, str], Item] = {}
        self.failures: list[Failure] = []

    def add(self, items: Sequence[Item], modality: str, embeddings: np.ndarray) -> None:
        for it, v in zip(items, embeddings):
            self.vectors[(it.id, modality)] = v
            self.items[(it.id, modality)] = it

    def add_failures(self, failures: Sequence[Failure]) -> None:
        self.failures.extend(failures)

    def ordered(self, source: Source, modality: str) -> tuple[list[Item], np.ndarray]:
        """Embedded items in source order (failed ones left out) and their ``[N, D]`` matrix."""
        keys = [(it.id, modality) for it in source.items() if (it.id, modality) in self.vectors]
        vecs = [self.vectors[k] for k in keys]
        dim = vecs[0].shape[-1] if vecs else 0
        return [self.items[k] for k in keys], (
            np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)
        )


@dataclass
class EmbedResult:
    ids: list[str]
    embeddings: np.ndarray
    failures: list[Failure]
    stats: EmbedStats


def embed_source(
    model,
    preprocess,
    tokenizer,
    source: Source,
    cfg: EmbedConfig | None = None,
    modality: str | None = None,
) -> EmbedResult:
    """Embed a (small) source in memory; returns ids in source order and their embeddings."""
    cfg = cfg or EmbedConfig(progress=False)
    sink = MemorySink()
    stats = run_local(model, preprocess, tokenizer, source, cfg, sink)
    mod = modality or modalities_for(source, cfg.modality)[0]
    items, vecs = sink.ordered(source, mod)
    return EmbedResult([it.id for it in items], vecs, sink.failures, stats)


def embed_images(model, preprocess, paths: Sequence[str | Path], cfg: EmbedConfig | None = None):
    """Embeddings of image files (L2-normalised), in order; unreadable files are in ``failures``."""
    from biomedclip.embedding.sources import image_files

    return embed_source(model, preprocess, None, image_files(paths), cfg, "image")


def embed_texts(model, tokenizer, texts: Sequence[str], cfg: EmbedConfig | None = None):
    """Embeddings of texts (L2-normalised), in order; length-bucketed batches."""
    from biomedclip.embedding.sources import texts as text_source

    return embed_source(model, None, tokenizer, text_source(list(texts)), cfg, "text")


# ---- the Parquet job --------------------------------------------------------------------------------
def embed_to_dataset(
    model,
    preprocess,
    tokenizer,
    source: Source,
    out_dir: str | Path,
    cfg: EmbedConfig | None = None,
    model_source: str = "unknown",
    overwrite: bool = False,
    engine: str = "local",
    ray_options=None,
) -> EmbedStats:
    """Embed ``source`` into a resumable Parquet dataset at ``out_dir`` (see :mod:`.store`).

    ``engine="ray"`` runs the encoding on Ray model actors (``ray_options``: a
    :class:`~biomedclip.embedding.ray_engine.RayOptions`); they load the model from ``model_source``.
    """
    cfg = cfg or EmbedConfig()
    mods = modalities_for(source, cfg.modality)
    info = DatasetInfo(
        model=model_source,
        model_sha256=getattr(getattr(model, "load_info", None), "sha256", None),
        dim=int(model.config.embed_dim),
        dtype=cfg.storage_dtype,
        precision=EncoderSettings(cfg.precision, backend=cfg.backend).label,
        modality="both" if len(mods) == 2 else mods[0],
        source=source.description,
    )
    writer = EmbeddingWriter(out_dir, info, source.meta_schema, cfg.rows_per_part, overwrite)
    skip = {m: writer.skip_ids(m) for m in ("image", "text")}
    ok = False
    try:
        if engine == "ray":
            import dataclasses

            from biomedclip.embedding.ray_engine import RayOptions, run_ray

            opts = dataclasses.asdict(ray_options or RayOptions())
            stats = run_ray(model_source, source, cfg, writer, skip, **opts)
        elif engine == "local":
            stats = run_local(model, preprocess, tokenizer, source, cfg, writer, skip)
        else:
            raise ConfigError(f"engine {engine!r}: use local or ray")
        ok = True
    finally:
        writer.close(complete=ok)
    return stats
