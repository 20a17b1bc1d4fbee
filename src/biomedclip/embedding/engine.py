"""The local embedding engine: images decoded while the model runs (by DataLoader worker processes,
or by a thread on machines without cores to spare), texts bucketed by length, results streamed
into a sink (a Parquet dataset or memory)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from torch.utils.data import DataLoader

from biomedclip.embedding.batching import (
    Failure,
    ImageBatchStream,
    identity_collate,
    text_batches,
)
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.prefetch import prefetch
from biomedclip.embedding.sources import Item, Source
from biomedclip.embedding.store import STORAGE_DTYPES, DatasetInfo, EmbeddingWriter
from biomedclip.errors import ConfigError

log = logging.getLogger(__name__)
MODALITIES = ("auto", "image", "text", "both")


PART_MODES = ("mean", "each")


@dataclass
class EmbedConfig(EncoderSettings):
    """An embedding job: how the model runs (:class:`EncoderSettings`) plus what is written.

    ``parts``: multi-image inputs (DICOM frames, NIfTI slices, slide tiles) give one row each
    (``each``, ids ``ID#frame=5``, ``ID#axial=40``, ``ID#tile=x224,y0``) or one row per input with
    the renormalised mean of their embeddings (``mean``, the default).
    """

    storage_dtype: str = "float32"
    modality: str = "auto"
    rows_per_part: int = 50_000  # rows per compacted part file
    progress: bool = True
    text_chunk: int = 16384
    parts: str = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality {self.modality!r}: use one of {', '.join(MODALITIES)}")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ConfigError(f"storage dtype {self.storage_dtype!r}: use float32 or float16")
        if self.parts not in PART_MODES:
            raise ConfigError(f"parts {self.parts!r}: use one of {', '.join(PART_MODES)}")


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


def part_key(part: dict) -> str:
    """The id suffix of one image of a multi-image input: ``frame=5``, ``axial=40``,
    ``tile=x224,y0``."""
    if "x" in part and "y" in part:
        return f"tile=x{part['x']},y{part['y']}" + (f",l{part['level']}" if "level" in part else "")
    if "slice" in part:
        return f"{part.get('plane', 'slice')}={part['slice']}"
    for key in ("frame", "page"):
        if key in part:
            return f"{key}={part[key]}"
    return "part"


def _rows_for_sink(batch, embeddings: np.ndarray, parts_mode: str):
    """Items and vectors as a row-per-item sink stores them: the mean of an item's images, or one
    row per image with the part in the id."""
    owners = np.asarray(batch.owners)
    if len(owners) == len(batch.items):  # one image per item: nothing to combine
        return batch.items, embeddings
    if parts_mode == "each":
        items = []
        for owner, part in zip(batch.owners, batch.parts):
            it = batch.items[owner]
            key = f"{it.id}#{part_key(part)}" if part else it.id
            items.append(Item(key, path=it.path, text=it.text, meta=it.meta))
        return items, embeddings
    sums = np.zeros((len(batch.items), embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, embeddings)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return batch.items, sums.astype(np.float32)


def run_local(
    encoder: Encoder,
    source: Source,
    modality: str | Sequence[str],
    sink: Sink,
    skip: dict[str, frozenset[str]] | None = None,
    progress: bool = False,
    text_chunk: int = 16384,
    parts: str = "mean",
) -> EmbedStats:
    """The one encoding loop: embed every item of ``source`` not in ``skip[modality]`` and hand the
    results to ``sink`` (a Parquet writer, or the in-memory sink behind :class:`Encoder`).

    Images are decoded while the model runs (in DataLoader workers where the machine has cores to
    spare, else in a thread); texts are tokenised once and bucketed by length. With both
    modalities, an item's caption is embedded even when its image fails, and on a resumed job even
    when its image row was written before the interruption.
    """
    skip = skip or {}
    mods = modalities_for(source, modality) if isinstance(modality, str) else list(modality)
    settings = encoder.settings
    stats = EmbedStats()
    t0 = time.perf_counter()
    keeps_parts = getattr(sink, "keeps_parts", False)
    image_skip = skip.get("image", frozenset())
    text_skip = skip.get("text", frozenset())

    def record(failures: list[Failure]) -> None:
        if failures:
            sink.add_failures(failures)
            stats.failed += len(failures)
            stats.failures.extend(failures)

    def encode_texts(items: list[Item]) -> None:
        batches, failures = text_batches(
            encoder.tokenizer, items, settings.text_batch_size, settings.token_budget
        )
        record(failures)
        for b in batches:
            vecs = encoder.encode_tokens(b.input_ids, b.attention_mask).cpu().numpy()
            sink.add(b.items, "text", vecs)
            stats.texts += len(b.items)
            stats.truncated_texts += b.truncated

    if "image" in mods:
        total = None
        if source.sized:
            total = sum(1 for it in source.items() if it.id not in image_skip)
            stats.skipped = len(source) - total
        stream = ImageBatchStream(
            source, encoder.preprocess, settings.batch_size, image_skip, encoder.read
        )
        workers = settings.workers() if total is None or total > settings.batch_size else 0
        if workers:
            loader = DataLoader(
                stream,
                batch_size=None,
                num_workers=workers,
                collate_fn=identity_collate,
                pin_memory=encoder.device.type == "cuda",
                prefetch_factor=4,
            )
            stop = contextlib.nullcontext()
        else:  # no cores to spare for processes: decode the next batch in a thread meanwhile
            loader = prefetch(stream, depth=2)
            stop = contextlib.closing(loader)  # stops the thread if the loop ends early
        with _progress(total, progress, "img") as bar, stop:
            for batch in loader:
                record(batch.failures)
                if batch.pixels is not None:
                    vecs = encoder.encode_pixels(batch.pixels).cpu().numpy()
                    if keeps_parts:
                        sink.add_parts(batch.items, batch.owners, batch.parts, "image", vecs)
                    else:
                        rows, row_vecs = _rows_for_sink(batch, vecs, parts)
                        sink.add(rows, "image", row_vecs)
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
        if "text" in mods and image_skip:
            # resumed job: captions of items whose image row was written before the interruption
            orphans = [
                it
                for it in source.items()
                if it.id in image_skip and it.id not in text_skip and it.text is not None
            ]
            for start in range(0, len(orphans), text_chunk):
                encode_texts(orphans[start : start + text_chunk])
    else:
        pending_iter = (it for it in source.items() if it.id not in text_skip)
        total = None
        if source.sized:
            total = sum(1 for it in source.items() if it.id not in text_skip)
            stats.skipped = len(source) - total
        with _progress(total, progress, "text") as bar:
            chunk: list[Item] = []
            for it in pending_iter:
                chunk.append(it)
                if len(chunk) >= text_chunk:
                    encode_texts(chunk)
                    bar.update(len(chunk))
                    chunk = []
            if chunk:
                encode_texts(chunk)
                bar.update(len(chunk))
    stats.seconds = time.perf_counter() - t0
    return stats


# ---- in memory ------------------------------------------------------------------------------------
@dataclass
class EmbedResult:
    """One unit embedding per encoded input (multi-image inputs: the mean of their images)."""

    ids: list[str]
    embeddings: np.ndarray
    failures: list[Failure]
    stats: EmbedStats


def encoder_for(model, preprocess, tokenizer, cfg: EncoderSettings, source=None) -> Encoder:
    """The :class:`Encoder` of a job's settings; OpenVINO int8 and ``auto`` calibrate on the
    job's first image files when no calibration set is given (see :mod:`.calibration`)."""
    from biomedclip.embedding.calibration import job_calibration

    return Encoder(model, preprocess, tokenizer, job_calibration(cfg, source).encoder_settings())


def embed_source(
    model,
    preprocess,
    tokenizer,
    source: Source,
    cfg: EmbedConfig | None = None,
    modality: str | None = None,
) -> EmbedResult:
    """Embed one modality of a (small) source in memory; ids in source order, failed ones left out."""
    from biomedclip.embedding.encoded import EncodedSink

    cfg = cfg or EmbedConfig(progress=False)
    mod = modality or modalities_for(source, cfg.modality)[0]
    encoder = encoder_for(model, preprocess, tokenizer, cfg, source)
    sink = EncodedSink(source, encoder.dim)
    stats = run_local(encoder, source, [mod], sink, progress=cfg.progress)
    encoded = sink.result(mod, stats.truncated_texts)
    if cfg.parts == "each":
        ids = [
            f"{key}#{part_key(part)}" if part else key
            for key, part in zip(encoded.ids, encoded.parts)
        ]
        return EmbedResult(ids, encoded.embeddings, encoded.failures, stats)
    vecs, positions = encoded.per_input()
    items = list(source.items())
    return EmbedResult([items[i].id for i in positions], vecs, encoded.failures, stats)


def embed_images(model, preprocess, paths: Sequence[str | Path], cfg: EmbedConfig | None = None):
    """Embeddings of image files (L2-normalised), in order; unreadable files are in ``failures``."""
    from biomedclip.embedding.sources import image_files

    return embed_source(model, preprocess, None, image_files(paths), cfg, "image")


def embed_texts(model, tokenizer, texts: Sequence[str], cfg: EmbedConfig | None = None):
    """Embeddings of texts (L2-normalised), in order; length-bucketed batches."""
    from biomedclip.embedding.sources import texts as text_source

    return embed_source(model, None, tokenizer, text_source(list(texts)), cfg, "text")


_PART_SUFFIX = re.compile(r"#(tile=x-?\d+,y-?\d+(,l\d+)?|frame=\d+|page=\d+|\w+=\d+|part)$")


def base_id(row_id: str) -> str:
    """The item id of a row written with ``parts="each"`` (``scan.dcm#frame=5`` -> ``scan.dcm``)."""
    return _PART_SUFFIX.sub("", row_id)


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
    import dataclasses

    cfg = cfg or EmbedConfig()
    mods = modalities_for(source, cfg.modality)
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine {engine!r}: use local or ray")
    # the encoder first: `auto` resolves (on the driver, for every Ray replica alike) and the
    # manifest records what runs
    encoder = encoder_for(model, preprocess, tokenizer, cfg, source)
    if engine == "ray":
        cfg = dataclasses.replace(
            cfg, backend=encoder.settings.backend, precision=encoder.settings.precision
        )
    info = DatasetInfo(
        model=model_source,
        model_sha256=model.load_info.sha256,
        dim=int(model.config.embed_dim),
        dtype=cfg.storage_dtype,
        precision=encoder.label,
        modality="both" if len(mods) == 2 else mods[0],
        source=source.description,
        backend=encoder.provenance(),
    )
    writer = EmbeddingWriter(out_dir, info, source.meta_schema, cfg.rows_per_part, overwrite)
    skip = {m: writer.skip_ids(m) for m in ("image", "text")}
    if cfg.parts == "each":  # rows of a multi-image input are written together, in one batch
        skip = {m: frozenset(base_id(i) for i in ids) for m, ids in skip.items()}
    ok = False
    try:
        if engine == "ray":
            from biomedclip.embedding.ray_engine import RayOptions, run_ray

            opts = dataclasses.asdict(ray_options or RayOptions())
            stats = run_ray(model_source, source, cfg, writer, skip, **opts)
        else:
            stats = run_local(
                encoder, source, mods, writer, skip, cfg.progress, cfg.text_chunk, cfg.parts
            )
        ok = True
    finally:
        writer.close(complete=ok)
    return stats
