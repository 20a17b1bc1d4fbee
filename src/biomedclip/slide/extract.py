"""Patch features of one slide, through the one encoding engine.

A slide's patches become items of a :class:`~biomedclip.embedding.sources.ListSource` whose
image is a :class:`PatchRef` (the slide path and where to read); :class:`PatchPreprocess` wraps
the model's preprocess so that the engine's decode stage (:func:`~biomedclip.embedding.engine.
run_local`: a prefetch thread, or DataLoader worker processes where cores are spare) reads the
patch from the slide and preprocesses it while the model runs on the previous batch. Patches
stream: at most a few batches of them are alive, and no pyramid level is ever read whole (only
the small level the thumbnail comes from). A patch's feature is therefore exactly what
``biomedclip embed`` gives for the same patch saved as a lossless image.

:func:`extract_slide` is the per-slide unit that the cohort job (:mod:`.features`) runs locally
and the Ray engine (:mod:`.ray_extract`) maps over slides.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.embedding.encoder import Encoder
from biomedclip.embedding.engine import run_local
from biomedclip.embedding.sources import Item, ListSource
from biomedclip.errors import ImageDecodeError, NoTissueError
from biomedclip.imaging.options import ReadOptions
from biomedclip.io_utils import atomic_write_json
from biomedclip.slide import features_file as ff
from biomedclip.slide.cohort import SlideInput
from biomedclip.slide.layout import ExtractSettings, done_path
from biomedclip.slide.patching import PatchPlan, plan_patches


@dataclass(frozen=True)
class PatchRef:
    """Where one patch is: read with :meth:`read` (the slide is opened once per process)."""

    path: str
    x: int
    y: int
    level: int
    read_size: int
    size: int

    def read(self, options: ReadOptions | None = None):
        return _open(self.path, options).read_patch(
            self.x, self.y, self.level, self.read_size, self.size
        )


_open_lock = threading.Lock()
_open_slides: dict[str, Any] = {}


def _open(path: str, options: ReadOptions | None):
    """The open slide of ``path`` in this process (the last one only: slides go one by one)."""
    from biomedclip.imaging.wsi import open_slide

    with _open_lock:
        slide = _open_slides.get(path)
        if slide is None:
            close_open_slides()
            slide = _open_slides[path] = open_slide(path, options)
        return slide


def close_open_slides() -> None:
    for key in list(_open_slides):
        _open_slides.pop(key).close()


class PatchPreprocess:
    """The model's preprocess, reading :class:`PatchRef` s from their slide first."""

    def __init__(self, preprocess: Callable, options: ReadOptions | None = None):
        self.preprocess, self.options = preprocess, options

    def __call__(self, image):
        if isinstance(image, PatchRef):
            image = image.read(self.options)
        return self.preprocess(image)


def patch_encoder(encoder: Encoder, options: ReadOptions | None = None) -> Encoder:
    """An :class:`Encoder` on the same model and settings whose preprocess reads patches."""
    return Encoder(
        encoder.model,
        PatchPreprocess(encoder.preprocess, options),
        encoder.tokenizer,
        encoder.settings,
    )


def model_attrs(encoder: Encoder, model_source: str) -> dict[str, Any]:
    """The model part of a feature file's attributes."""
    from biomedclip import __version__

    model = encoder.model
    return {
        "model": str(model_source),
        "model_sha256": model.load_info.sha256,
        "feature_dim": encoder.dim,
        "precision": encoder.settings.label,
        "preprocessing": {
            **asdict(model.config.preprocess),
            "patch_read": "level-0 box of patch_size_level0 read at `level` (read_size px), "
            "Lanczos-resized to patch_size, then the model's eval transform",
        },
        "biomedclip_version": __version__,
    }


def plan_slide(slide: SlideInput, settings: ExtractSettings) -> PatchPlan:
    """Open the slide, find its tissue patches, close it."""
    from biomedclip.imaging.wsi import open_slide

    with open_slide(slide.path, settings.read_options) as s:
        plan = plan_patches(s, settings.patch)
    if not len(plan.coords):
        raise NoTissueError(
            f"no {plan.patch_size}px patch at {plan.target_magnification:g}x with >= "
            f"{plan.tissue_fraction:.0%} tissue (lower --tissue-fraction?)",
            slide.path,
        )
    return plan


class _SlideSink:
    """Collects one slide's patch embeddings by patch index."""

    def __init__(self, n: int, dim: int):
        self.vectors = np.zeros((n, dim), np.float32)
        self.seen = np.zeros(n, bool)
        self.failures: list = []

    def add(self, items, modality: str, embeddings: np.ndarray) -> None:
        idx = np.fromiter((int(it.id) for it in items), np.int64, len(items))
        self.vectors[idx] = embeddings
        self.seen[idx] = True

    def add_failures(self, failures) -> None:
        self.failures.extend(failures)


@dataclass
class SlideResult:
    slide_id: str
    path: str
    patches: int
    seconds: float
    files: list[str]


def encode_plan(encoder: Encoder, plan: PatchPlan, path: str, progress: bool = False) -> np.ndarray:
    """``[N, D]`` features of a plan's patches; ``encoder`` must come from :func:`patch_encoder`.
    Any patch that does not read fails the slide (a feature file never misses patches)."""
    items = [
        Item(
            str(i),
            path=path,
            image=PatchRef(path, int(x), int(y), plan.level, plan.read_size, plan.patch_size),
        )
        for i, (x, y) in enumerate(plan.coords.tolist())
    ]
    sink = _SlideSink(len(items), encoder.dim)
    try:
        run_local(encoder, ListSource(items, True, False), ["image"], sink, progress=progress)
    finally:
        close_open_slides()
    if sink.failures or not sink.seen.all():
        first = sink.failures[0].error if sink.failures else "patches missing"
        raise ImageDecodeError(
            f"{len(sink.failures)} of {len(items)} patches could not be read (first: {first})",
            path,
        )
    return sink.vectors


def extract_slide(
    encoder: Encoder,
    slide: SlideInput,
    out_dir: str | Path,
    settings: ExtractSettings,
    attrs: dict[str, Any],
    plan: PatchPlan | None = None,
    progress: bool = False,
) -> SlideResult:
    """Patch, encode and write one slide's feature file(s), then its done marker.

    ``encoder`` comes from :func:`patch_encoder`; ``attrs`` are the model attributes
    (:func:`model_attrs`). Errors (unreadable slide, no resolution, no tissue) propagate as
    :class:`~biomedclip.errors.ImageError` naming the slide; nothing is written then.
    """
    t0 = time.perf_counter()
    plan = plan or plan_slide(slide, settings)
    vectors = encode_plan(encoder, plan, slide.path, progress)
    sf = ff.SlideFeatures(
        vectors,
        plan.coords,
        {
            **attrs,
            **plan.attrs(),
            "slide_id": slide.slide_id,
            "slide_path": str(slide.path),
            "label": slide.label,
            "patient_id": slide.patient_id,
        },
    )
    files = settings.files(out_dir, slide.slide_id)
    for f in files:
        (ff.write_parquet if f.suffix == ".parquet" else ff.write_h5)(f, sf)
    seconds = time.perf_counter() - t0
    result = SlideResult(slide.slide_id, str(slide.path), len(sf), seconds, [str(f) for f in files])
    atomic_write_json(done_path(out_dir, slide.slide_id), asdict(result))
    return result
