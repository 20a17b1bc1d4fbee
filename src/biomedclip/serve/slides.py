"""The Slides page (``serve --slides DIR``): precomputed per-slide feature files
(``DIR/h5_files/<slide_id>.h5``), each slide's heatmap for a typed prompt and its top patches.

The prompt goes through the service's text batcher (:meth:`Runtime.classifier`, one template
``{}``: the text as typed); patch scores are cosine similarities to it (no image is encoded). The
thumbnail and the top patches are read from the slide the feature file names (attribute
``slide_path`` / ``source``) through :func:`biomedclip.imaging.open_slide`; without it the heatmap
is drawn on a plain canvas and the patches are listed by coordinates only. Feature files of
another model than the one served are refused (their ``model_sha256`` attribute).
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from biomedclip.errors import InputError
from biomedclip.serve.routes import ERRORS, require_api_key, runtime

STATIC = Path(__file__).parent / "static"
CACHE = 8
PATCH_PX = 160  # side of a top-patch image in the page

api = APIRouter(prefix="/v1/slides", dependencies=[Depends(require_api_key)], responses=ERRORS,
                tags=["slides"])  # fmt: skip


class HeatmapRequest(BaseModel):
    text: str = Field(..., description="the prompt, e.g. 'tumor'")
    top_k: int = Field(6, ge=0, le=50, description="top patches returned")
    max_side: int = Field(768, ge=64, le=2048, description="heatmap size in pixels")


class SlideLibrary:
    """The feature files under ``root`` with small caches of features and thumbnails."""

    def __init__(self, root: str | Path):
        from biomedclip.slide.features_file import H5_DIR, PARQUET_DIR

        self.root = Path(root)
        files = sorted((self.root / H5_DIR).glob("*.h5")) or sorted(
            (self.root / PARQUET_DIR).glob("*.parquet")
        )
        if not files:
            raise InputError(f"--slides {root}: no feature files under {H5_DIR}/ or {PARQUET_DIR}/")
        self.files = {p.stem: p for p in files}
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._listing: list[dict] | None = None

    def _cached(self, key: tuple, make):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        return value

    def features(self, slide_id: str):
        from biomedclip.slide.features_file import read_features

        if slide_id not in self.files:
            raise InputError(f"slide {slide_id!r}: not among the {len(self.files)} slides")
        return self._cached(("f", slide_id), lambda: read_features(self.files[slide_id]))

    def slide_path(self, slide_id: str) -> Path | None:
        from biomedclip.slide.heatmap import slide_file

        return slide_file(self.features(slide_id), self.files[slide_id])

    def listing(self) -> list[dict]:
        """Each slide's id, patch count and whether its slide file is there (read once)."""
        if self._listing is None:
            out = []
            for sid in self.files:
                sf = self.features(sid)
                found = self.slide_path(sid) is not None
                out.append({"id": sid, "patches": len(sf), "image": found})
            self._listing = out
        return self._listing

    def heatmap(self, slide_id: str, weights, text: str, top_k: int, max_side: int) -> dict:
        import numpy as np

        from biomedclip.explain.render import png_bytes
        from biomedclip.imaging.wsi import open_slide
        from biomedclip.slide.heatmap import patch_size_level0, slide_heatmap, text_scores

        sf = self.features(slide_id)
        scores = text_scores(sf, np.asarray(weights)[0])
        path = self.slide_path(slide_id)
        hm = slide_heatmap(sf, scores, path, f'cosine similarity to "{text}"', max_side)
        order = np.argsort(-scores, kind="stable")[:top_k]
        patch0 = patch_size_level0(sf)
        top = []
        slide = open_slide(path) if path is not None else None
        try:
            for i in order:
                x, y = (int(v) for v in sf.coords[i])
                item = {"x": x, "y": y, "score": float(scores[i]), "image": None}
                if slide is not None:
                    im = slide.read_patch(x, y, 0, patch0, PATCH_PX)
                    item["image"] = data_uri(png_bytes(im))
                top.append(item)
        finally:
            if slide is not None:
                slide.close()
        return {"id": slide_id, "text": text, "patches": len(sf), "min": hm.vmin,
                "max": hm.vmax, "heatmap": data_uri(png_bytes(hm.image)),
                "top_patches": top}  # fmt: skip


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def library(request: Request) -> SlideLibrary:
    return request.app.state.slides


@api.get("", summary="the slides whose features were precomputed (serve --slides DIR)")
async def list_slides(request: Request):
    lib = library(request)
    return {"slides": await run_in_threadpool(lib.listing)}


@api.post("/{slide_id}/heatmap", summary="a slide's heatmap for a prompt and its top patches")
async def heatmap(slide_id: str, body: HeatmapRequest, request: Request):
    rt = runtime(request)
    lib = library(request)
    text = body.text.strip()
    if not text:
        raise InputError("text: the prompt is empty")
    sf = await run_in_threadpool(lib.features, slide_id)
    made_by = sf.attrs.get("model_sha256")
    if made_by and rt.sha256 and made_by != rt.sha256:
        raise InputError(
            f"slide {slide_id!r}: its features come from model sha256 {str(made_by)[:12]}…, "
            f"the service runs {rt.sha256[:12]}…: extract them again with this model"
        )
    weights = await rt.classifier((text,), "{}")
    if weights.shape[1] != sf.features.shape[1]:
        raise InputError(f"slide {slide_id!r}: {sf.features.shape[1]}-d features, the model's "
                         f"texts are {weights.shape[1]}-d")  # fmt: skip
    return await run_in_threadpool(
        lib.heatmap, slide_id, weights.numpy(), text, body.top_k, body.max_side
    )


def install(app: FastAPI, slides_dir: str | None) -> None:
    """Mount the Slides API and page when the service was given ``--slides DIR``."""
    if not slides_dir:
        return
    app.state.slides = SlideLibrary(slides_dir)
    app.include_router(api)

    @app.api_route("/slides", methods=["GET", "HEAD"], include_in_schema=False)
    async def slides_page() -> FileResponse:
        return FileResponse(STATIC / "slides.html", media_type="text/html")
