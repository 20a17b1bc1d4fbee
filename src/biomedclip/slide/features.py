"""Features at cohort scale: every slide of a cohort to ``DIR/h5_files/<slide_id>.h5``.

The layout of ``DIR`` (CLAM / TRIDENT users recognise it)::

    DIR/extraction.json          what was extracted and how (model, patching, precision)
    DIR/h5_files/<id>.h5         features [N, D] + coords [N, 2] + attributes (features_file)
    DIR/parquet_files/<id>.parquet   with --format parquet / both
    DIR/done/<id>.json           the slide's done marker, written after its file(s)
    DIR/errors.jsonl             one line per slide that failed in the last run

Resumable: a slide whose done marker and files exist is skipped, writes are atomic, so a killed
run redoes at most the slide in flight. A rerun with other settings (model, patching, precision)
is refused unless ``overwrite``. A slide that cannot be read (corrupt, truncated, no resolution,
no tissue) goes to ``errors.jsonl`` and the others go on. Locally, the next slide is patched in a
background thread while the current one is encoded; ``engine="ray"`` maps slides over Ray actors
(:mod:`.ray_extract`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.embedding.encoder import Encoder
from biomedclip.embedding.prefetch import prefetch
from biomedclip.errors import BiomedCLIPError, ConfigError
from biomedclip.io_utils import atomic_write_json
from biomedclip.slide.cohort import SlideInput
from biomedclip.slide.extract import (
    SlideResult,
    extract_slide,
    model_attrs,
    patch_encoder,
    plan_slide,
)
from biomedclip.slide.layout import DONE_DIR, ExtractSettings, is_done

MANIFEST = "extraction.json"
ERRORS = "errors.jsonl"


@dataclass
class SlideError:
    slide_id: str
    path: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"slide_id": self.slide_id, "path": self.path, "error": self.error}


@dataclass
class CohortStats:
    slides: int = 0
    already_done: int = 0
    extracted: int = 0
    patches: int = 0
    seconds: float = 0.0
    results: list[SlideResult] = field(default_factory=list)
    errors: list[SlideError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)

    def rate(self) -> float:
        return self.patches / self.seconds if self.seconds > 0 else 0.0


def _prepare_out(out: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    """Start afresh (``overwrite``) or check that ``out`` holds the same extraction; write the
    manifest; remove the temporary files a killed run left."""
    path = out / MANIFEST
    if overwrite:
        for sub in ("h5_files", "parquet_files", DONE_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / ERRORS).unlink(missing_ok=True)
    elif path.is_file():
        old = json.loads(path.read_text())
        keys = ("model", "model_sha256", "precision", "extraction")
        diff = [k for k in keys if old.get(k) != manifest.get(k)]
        if diff:
            raise ConfigError(
                f"{out} holds features extracted with other settings ({', '.join(diff)}: "
                f"{[old.get(k) for k in diff]} now {[manifest.get(k) for k in diff]}); use another "
                "--out, or --overwrite to start afresh"
            )
    atomic_write_json(path, manifest)
    for sub in ("h5_files", "parquet_files", DONE_DIR):  # what a killed run left half-written
        for tmp in (out / sub).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


class _Errors:
    """``errors.jsonl`` of this run: rewritten at the start, a line per failed slide."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def add(self, err: SlideError) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(err.to_dict()) + "\n")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="slide", desc="slides", dynamic_ncols=True)


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, BiomedCLIPError) else f"{type(e).__name__}: {e}"


def extract_features(
    encoder: Encoder,
    slides: Sequence[SlideInput],
    out_dir: str | Path,
    settings: ExtractSettings | None = None,
    model_source: str = "unknown",
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
    ray_options=None,
) -> CohortStats:
    """Extract every slide of ``slides`` not already done into ``out_dir`` (see the module)."""
    settings = settings or ExtractSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attrs = model_attrs(encoder, model_source)
    manifest = {
        "model": attrs["model"],
        "model_sha256": attrs["model_sha256"],
        "precision": attrs["precision"],
        "feature_dim": attrs["feature_dim"],
        "extraction": settings.to_dict(),
        "layout": "CLAM/TRIDENT: h5_files/<slide_id>.h5 with features [N, D], coords [N, 2]",
    }
    _prepare_out(out, manifest, overwrite)
    stats = CohortStats(slides=len(slides))
    pending = [s for s in slides if not is_done(out, s.slide_id, settings)]
    stats.already_done = len(slides) - len(pending)
    errors = _Errors(out / ERRORS)
    t0 = time.perf_counter()

    def finished(result: SlideResult | None, err: SlideError | None, bar) -> None:
        if result is not None:
            stats.results.append(result)
            stats.extracted += 1
            stats.patches += result.patches
        if err is not None:
            stats.errors.append(err)
            errors.add(err)
        bar.update(1)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(patches=stats.patches, per_s=f"{stats.patches / max(elapsed, 1e-9):.1f}")

    with _progress(len(pending), progress) as bar:
        if engine == "ray":
            from biomedclip.slide.ray_extract import run_ray

            for result, err in run_ray(model_source, pending, out, settings, encoder, ray_options):
                finished(result, err, bar)
        elif engine == "local":
            penc = patch_encoder(encoder, settings.read_options)
            for slide, plan, error in prefetch(_plans(pending, settings), depth=1):
                if error is not None:
                    finished(None, SlideError(slide.slide_id, str(slide.path), error), bar)
                    continue
                bar.set_description(f"slides ({slide.slide_id}: {len(plan.coords)} patches)")
                try:
                    result = extract_slide(
                        penc, slide, out, settings, attrs, plan, progress=progress
                    )
                except (BiomedCLIPError, OSError, ValueError, RuntimeError) as e:
                    finished(None, SlideError(slide.slide_id, str(slide.path), _describe(e)), bar)
                else:
                    finished(result, None, bar)
        else:
            raise ConfigError(f"engine {engine!r}: use local or ray")
    stats.seconds = time.perf_counter() - t0
    return stats


def _plans(slides: Sequence[SlideInput], settings: ExtractSettings) -> Iterator[tuple]:
    """``(slide, plan, None)`` or ``(slide, None, error)`` for each slide, in order."""
    for slide in slides:
        try:
            yield slide, plan_slide(slide, settings), None
        except (BiomedCLIPError, OSError, ValueError, RuntimeError, MemoryError) as e:
            yield slide, None, _describe(e)
