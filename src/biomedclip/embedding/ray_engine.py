"""The distributed engine: the same job on a Ray cluster (``biomedclip embed --engine ray``).

Items flow through Ray Data: ``from_items`` (listing sources) or one ``flat_map`` task per shard
(WebDataset), then ``map_batches`` with :class:`EmbedActor` model actors in a fixed-size actor pool
(one per GPU, or one per ``cpus_per_actor`` CPU slots). Each actor runs the local
engine's :func:`~biomedclip.embedding.engine.run_local` on its batch with the same
:class:`~biomedclip.embedding.encoder.Encoder`. The driver streams results
into the same :class:`~biomedclip.embedding.store.EmbeddingWriter`, so output, resume and errors
behave exactly as with ``--engine local``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from biomedclip.embedding.batching import Failure
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.engine import (
    EmbedConfig,
    EmbedStats,
    Sink,
    _progress,
    modalities_for,
    run_local,
)
from biomedclip.embedding.sources import Item, ListSource, Source
from biomedclip.errors import ConfigError, InputError

log = logging.getLogger(__name__)
ROW_FIELDS = ("id", "path", "text", "data", "shard", "metadata")


@dataclass
class RayOptions:
    address: str | None = None  # None: connect to RAY_ADDRESS or start a local instance
    num_actors: int | None = None
    cpus_per_actor: float = 1.0
    device: str = "cpu"  # "cuda": one GPU per actor
    init_kwargs: dict | None = None


def _row(item: Item) -> dict:
    return {
        "id": item.id,
        "path": item.path,
        "text": item.text,
        "data": item.data,
        "shard": item.meta.get("shard"),
        "metadata": item.meta.get("metadata"),
        "error": None,
    }


class _Rows:
    """A sink collecting ``(item, modality, vector, error)`` rows inside an actor."""

    def __init__(self) -> None:
        self.rows: list[tuple[Item, str, np.ndarray | None, str]] = []

    def add(self, items, modality: str, embeddings: np.ndarray) -> None:
        self.rows.extend((it, modality, v, "") for it, v in zip(items, embeddings))

    def add_failures(self, failures) -> None:
        self.rows.extend((Item(f.id, f.path), f.modality, None, f.error) for f in failures)


class EmbedActor:
    """A model replica: ``__call__(batch) -> rows`` with one row per (item, modality). It runs the
    local engine's :func:`~biomedclip.embedding.engine.run_local` on its batch, so decoding,
    read options, bucketing and error handling are the same as with ``--engine local``."""

    def __init__(
        self,
        model_source: str,
        modalities: list[str],
        settings: EncoderSettings,
        device: str,
        threads: int,
        parts: str = "mean",
    ):
        import torch

        from biomedclip.factory import load

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        model, preprocess, tokenizer = load(model_source, device=device)
        self.encoder = Encoder(model, preprocess, tokenizer, settings)
        self.modalities, self.parts = modalities, parts
        self.dim = self.encoder.dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        items = [
            Item(
                id=str(batch["id"][i]),
                path=_str(batch["path"][i]),
                text=_str(batch["text"][i]),
                data=_bytes(batch["data"][i]),
                meta={"shard": _str(batch["shard"][i]), "metadata": _str(batch["metadata"][i])},
            )
            for i in range(n)
        ]
        sink = _Rows()
        broken = {i for i in range(n) if _str(batch["error"][i])}  # unreadable shards
        sink.rows.extend(
            (items[i], self.modalities[0], None, str(batch["error"][i])) for i in broken
        )
        items = [it for i, it in enumerate(items) if i not in broken]
        if items:
            source = ListSource(items, "image" in self.modalities, "text" in self.modalities)
            run_local(self.encoder, source, self.modalities, sink, parts=self.parts)
        out = sink.rows
        zeros = np.zeros(self.dim, np.float32)
        return {
            "id": np.array([o[0].id for o in out], dtype=object),
            "path": np.array([o[0].path for o in out], dtype=object),
            "text": np.array([o[0].text for o in out], dtype=object),
            "shard": np.array([o[0].meta.get("shard") for o in out], dtype=object),
            "metadata": np.array([o[0].meta.get("metadata") for o in out], dtype=object),
            "modality": np.array([o[1] for o in out], dtype=object),
            "embedding": np.stack([o[2] if o[2] is not None else zeros for o in out])
            if out
            else np.zeros((0, self.dim), np.float32),
            "failed": np.array([bool(o[3]) for o in out], dtype=bool),
            "error": np.array([o[3] or "-" for o in out], dtype=object),
        }


def _null(v) -> bool:
    """Ray turns an all-null column into float NaNs."""
    return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))


def _str(v) -> str | None:
    return None if _null(v) else str(v)


def _bytes(v) -> bytes | None:
    return None if _null(v) else bytes(v)


def _read_shard(row: dict, skip: frozenset[str], source: Source) -> list[dict]:
    try:
        return [_row(it) for it in source.shard_items(row["shard"]) if it.id not in skip]
    except InputError as e:
        return [
            {
                "id": row["shard"],
                "path": row["shard"],
                "text": None,
                "data": None,
                "shard": row["shard"],
                "metadata": None,
                "error": str(e),
            }
        ]


def run_ray(
    model_source: str,
    source: Source,
    cfg: EmbedConfig,
    sink: Sink,
    skip: dict[str, frozenset[str]] | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    device: str = "cpu",
    init_kwargs: dict | None = None,
) -> EmbedStats:
    """Embed ``source`` with Ray Data model actors; results go to ``sink`` as with the local engine."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ConfigError("--engine ray needs Ray Data: pip install 'biomedclip[ray]'") from e
    if cfg.compile:
        log.warning("--compile is ignored by the Ray engine")
    skip = skip or {}
    mods = modalities_for(source, cfg.modality)
    if model_source is None or not (os.path.exists(model_source) or ":" in model_source):
        raise ConfigError(
            f"Ray actors load the model themselves: {model_source!r} must be a path "
            "or hub id reachable from every node"
        )
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), **kwargs)
        started = True
    t0 = time.perf_counter()
    stats = EmbedStats()
    try:
        primary = mods[0]
        done = skip.get(primary, frozenset())
        if len(mods) == 2:  # an item is pending while any of its modalities is missing
            done = done & skip.get("text", frozenset())
        shards = source.shards()
        total, lookup = None, {}
        if shards is None:
            lookup = {it.id: it for it in source.items()}
            rows = [_row(it) for it in source.items() if it.id not in done]
            total = len(rows)
            stats.skipped = len(source) - total
            if not rows:
                return stats
            ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-total // cfg.batch_size)))
        else:
            ds = ray.data.from_items([{"shard": s} for s in shards]).flat_map(
                _read_shard, fn_kwargs={"skip": done, "source": source}
            )
        resources = ray.cluster_resources()
        if device.startswith("cuda"):
            n = num_actors or int(resources.get("GPU", 0))
            if n < 1:
                raise ConfigError("--device cuda with --engine ray: the Ray cluster has no GPUs")
            remote = {"num_gpus": 1, "num_cpus": cpus_per_actor}
        else:
            n = num_actors or max(1, int(resources.get("CPU", 1) // cpus_per_actor))
            remote = {"num_cpus": cpus_per_actor}
        ds = ds.map_batches(
            EmbedActor,
            batch_size=cfg.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n),
            fn_constructor_kwargs={
                "model_source": model_source,
                "modalities": mods,
                "settings": dataclasses.replace(cfg.encoder_settings(), compile=False),
                "device": device,
                "threads": int(max(1, cpus_per_actor)),
                "parts": cfg.parts,
            },
            **remote,
        )
        with _progress(total, cfg.progress, "item") as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                _consume(batch, mods, skip, sink, stats, lookup)
                bar.update(int(np.sum(batch["modality"] == primary)))
    finally:
        if started:
            ray.shutdown()
    stats.seconds = time.perf_counter() - t0
    return stats


def _consume(batch, mods, skip, sink: Sink, stats: EmbedStats, lookup: dict[str, Item]) -> None:
    """Hand one result batch to the sink; listing sources get their metadata back from ``lookup``."""
    failures: list[Failure] = []
    for mod in mods:
        done = skip.get(mod, frozenset())
        sel = [
            i
            for i in range(len(batch["id"]))
            if batch["modality"][i] == mod and str(batch["id"][i]) not in done
        ]
        ok = [i for i in sel if not batch["failed"][i]]
        failures += [
            Failure(str(batch["id"][i]), _str(batch["path"][i]), mod, str(batch["error"][i]))
            for i in sel
            if batch["failed"][i]
        ]
        if ok:
            items = [
                lookup.get(str(batch["id"][i]))
                or Item(
                    str(batch["id"][i]),
                    _str(batch["path"][i]),
                    _str(batch["text"][i]),
                    meta={"shard": _str(batch["shard"][i]), "metadata": _str(batch["metadata"][i])},
                )
                for i in ok
            ]
            sink.add(items, mod, np.asarray(batch["embedding"][ok], dtype=np.float32))
            if mod == "image":
                stats.images += len(ok)
            else:
                stats.texts += len(ok)
    if failures:
        sink.add_failures(failures)
        stats.failed += len(failures)
        stats.failures.extend(failures)
