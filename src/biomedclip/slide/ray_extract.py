"""``slide features --engine ray``: slides spread over the model actors of a Ray cluster.

Slides flow through Ray Data (``from_items``, one row per slide) into ``map_batches`` with
:class:`SlideActor` replicas in a fixed-size actor pool (one per GPU, or per ``cpus_per_actor``
CPUs), one slide per call. Each actor loads the model itself (``model_source`` must be reachable
from every node) and runs :func:`~biomedclip.slide.extract.extract_slide`, the same per-slide
unit as the local engine: it writes the slide's feature file(s) and done marker into the output
folder, which must be shared by the nodes (as TRIDENT and CLAM assume). The driver collects one
status row per slide for progress and ``errors.jsonl``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from biomedclip.embedding.encoder import Encoder
from biomedclip.errors import BiomedCLIPError, ConfigError
from biomedclip.slide.cohort import SlideInput
from biomedclip.slide.extract import (
    SlideResult,
    extract_slide,
    model_attrs,
    patch_encoder,
)
from biomedclip.slide.layout import ExtractSettings


class SlideActor:
    """A model replica: ``__call__(rows) -> status rows``, one slide per row."""

    def __init__(
        self,
        model_source: str,
        settings,
        extract: ExtractSettings,
        out_dir: str,
        device: str = "cpu",
        threads: int = 1,
    ):
        import torch

        from biomedclip.factory import load

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        model, preprocess, tokenizer = load(model_source, device=device)
        encoder = Encoder(model, preprocess, tokenizer, settings)
        self.attrs = model_attrs(encoder, model_source)
        self.encoder = patch_encoder(encoder, extract.read_options)
        self.extract, self.out_dir = extract, out_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return process_rows(self.encoder, batch, self.out_dir, self.extract, self.attrs)


def process_rows(encoder, batch, out_dir, extract: ExtractSettings, attrs) -> dict:
    """Extract the slides of one Ray batch; a failed slide becomes an error row."""
    out: dict[str, list] = {"slide_id": [], "path": [], "patches": [], "seconds": [], "error": []}
    for i in range(len(batch["slide_id"])):
        slide = SlideInput(
            str(batch["slide_id"][i]),
            str(batch["path"][i]),
            _str(batch["label"][i]),
            _str(batch["patient_id"][i]),
        )
        patches, seconds, error = 0, 0.0, ""
        try:
            r = extract_slide(encoder, slide, out_dir, extract, attrs)
            patches, seconds = r.patches, r.seconds
        except BiomedCLIPError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - one bad slide never stops the actor
            error = f"{slide.path}: {type(e).__name__}: {e}"
        for k, v in zip(out, (slide.slide_id, slide.path, patches, seconds, error or "-")):
            out[k].append(v)
    return {k: np.array(v, dtype=object) for k, v in out.items()}


def _str(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)


def run_ray(
    model_source: str,
    slides: Sequence[SlideInput],
    out_dir: str | Path,
    extract: ExtractSettings,
    encoder: Encoder,
    options=None,
) -> Iterator[tuple]:
    """Yield ``(SlideResult, None)`` or ``(None, SlideError)`` per slide as actors finish them."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ConfigError("--engine ray needs Ray Data: pip install 'biomedclip[ray]'") from e
    from biomedclip.embedding.ray_engine import RayOptions
    from biomedclip.slide.features import SlideError

    opts = options or RayOptions()
    if model_source is None or not (os.path.exists(model_source) or ":" in model_source):
        raise ConfigError(
            f"Ray actors load the model themselves: {model_source!r} must be a path "
            "or hub id reachable from every node"
        )
    if not slides:
        return
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, **(opts.init_kwargs or {})}
        ray.init(address=opts.address or os.environ.get("RAY_ADDRESS"), **kwargs)
        started = True
    try:
        rows = [dataclasses.asdict(s) for s in slides]
        resources = ray.cluster_resources()
        if opts.device.startswith("cuda"):
            n = opts.num_actors or int(resources.get("GPU", 0))
            if n < 1:
                raise ConfigError("--device cuda with --engine ray: the Ray cluster has no GPUs")
            remote = {"num_gpus": 1, "num_cpus": opts.cpus_per_actor}
        else:
            n = opts.num_actors or max(1, int(resources.get("CPU", 1) // opts.cpus_per_actor))
            remote = {"num_cpus": opts.cpus_per_actor}
        n = min(n, len(rows))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            SlideActor,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n),
            fn_constructor_kwargs={
                "model_source": model_source,
                "settings": dataclasses.replace(encoder.settings, compile=False),
                "extract": extract,
                "out_dir": str(Path(out_dir).resolve()),
                "device": opts.device,
                "threads": int(max(1, opts.cpus_per_actor)),
            },
            **remote,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["slide_id"])):
                sid, path = str(batch["slide_id"][i]), str(batch["path"][i])
                err = str(batch["error"][i])
                if err != "-":
                    yield None, SlideError(sid, path, err)
                else:
                    files = [str(f) for f in extract.files(out_dir, sid)]
                    patches, secs = int(batch["patches"][i]), float(batch["seconds"][i])
                    yield SlideResult(sid, path, patches, secs, files), None
    finally:
        if started:
            ray.shutdown()
