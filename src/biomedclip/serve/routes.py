"""The /v1 API, health checks and /metrics. Handlers check limits on the event loop (arithmetic
on sizes), then build prompts, tokenise and decode in worker pools awaited until the request's
deadline, and wait on the batchers; every bad input raises an error that :mod:`.errors` turns
into a 4xx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from pathlib import Path

import numpy as np
import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from biomedclip.errors import BiomedCLIPError, InputError
from biomedclip.serve import schemas as S
from biomedclip.serve.batching import QueueFull
from biomedclip.serve.errors import NotReady, ServerFault, Unauthorized
from biomedclip.serve.inputs import input_modality
from biomedclip.serve.limits import check_count, check_range
from biomedclip.serve.runtime import Runtime

ERRORS = {
    code: {"model": S.ErrorBody, "description": text}
    for code, text in {
        400: "bad input (the message names it)",
        401: "missing or wrong API key",
        408: "the client did not send its body within the request timeout",
        413: "body, image, list, text or template too large",
        415: "unsupported image format",
        422: "body does not match the schema, or a template is outside the grammar",
        424: "the model failed on this input",
        429: "overloaded (queue full, too many requests, timeout): see Retry-After",
        500: "server fault (corrupt index, missing server package, bug)",
        503: "not ready (loading, failed, or shutting down)",
    }.items()
}
_bearer = HTTPBearer(auto_error=False)
THUMBNAIL_URL_TTL_S = 600


def _key_ok(request: Request, bearer: HTTPAuthorizationCredentials | None) -> bool:
    expected = request.app.state.settings.api_key
    if not expected:
        return True
    given = bearer.credentials if bearer else None
    return bool(given) and secrets.compare_digest(given.encode(), expected.encode())


async def require_api_key(
    request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    """Only ``Authorization: Bearer KEY``: never a query parameter (URLs end up in logs)."""
    if not _key_ok(request, bearer):
        raise Unauthorized("missing or invalid API key (send 'Authorization: Bearer KEY')")


def _signature(key: str, row: int, size: int, exp: int) -> str:
    msg = f"thumbnail:{row}:{size}:{exp}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()[:32]


def thumbnail_url(request: Request, row: int, size: int = 256) -> str:
    """The thumbnail's URL; with an API key, signed for THUMBNAIL_URL_TTL_S seconds (an <img>
    cannot send an Authorization header)."""
    url = f"/v1/items/{row}/thumbnail?size={size}"
    key = request.app.state.settings.api_key
    if not key:
        return url
    exp = int(time.time()) + THUMBNAIL_URL_TTL_S
    return f"{url}&exp={exp}&sig={_signature(key, row, size, exp)}"


api = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)
public = APIRouter(prefix="/v1", responses=ERRORS)  # routes that check their own credentials
ops = APIRouter()


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    if not rt.healthy:
        if rt.error:
            raise NotReady(f"model failed to load: {rt.error}", retry=False)
        if rt.ready:
            raise NotReady("a batch worker is not running", retry=False)
        raise NotReady("the model is loading")
    return rt


def model_id(rt: Runtime) -> str:
    return rt.settings.model


def check_model_name(rt: Runtime, name: str | None) -> None:
    accepted = {rt.settings.model, "biomedclip", Path(rt.settings.model.rstrip("/")).name}
    if name is not None and name not in accepted:
        raise InputError(f"model {name!r} is not served here (this server serves {model_id(rt)!r})")


def encode_vector(v: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()
    return v.tolist()


async def text_vectors(
    rt: Runtime, texts: list[str], name: str = "input"
) -> tuple[np.ndarray, int, list[int]]:
    rows, tokens, truncated = await rt.text_rows(texts, name)
    return await rt.text.run(rows, rt.remaining()), tokens, truncated


async def image_vectors(rt: Runtime, refs: list[str | Path], name: str) -> np.ndarray:
    pixels = await rt.pixels(refs, name)
    return await rt.image.run(pixels, rt.remaining())


# ---- /v1 -------------------------------------------------------------------------------------
@api.post("/embeddings", response_model=S.EmbeddingsResponse)
async def embeddings(body: S.EmbeddingsRequest, request: Request):
    """OpenAI-shaped embeddings of texts and/or images (unit-length float32 vectors).

    Without ``modality`` each input is recognised on its own: data URIs, ``file://`` URLs, allowed
    absolute paths and bare base64 of a known image signature are images, the rest text; texts
    and images may be mixed in one request (each item says its ``modality``).
    """
    rt = runtime(request)
    check_model_name(rt, body.model)
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    check_count(inputs, rt.settings.max_inputs, "input")
    if body.dimensions is not None and body.dimensions != rt.dim:
        raise InputError(
            f"dimensions={body.dimensions}: this model returns {rt.dim}-dimensional embeddings "
            "and does not truncate them"
        )
    if body.modality:
        kinds = [body.modality] * len(inputs)
    else:
        kinds = [input_modality(x, rt.resolver.roots) for x in inputs]
    texts = [i for i, k in enumerate(kinds) if k == "text"]
    images = [i for i, k in enumerate(kinds) if k == "image"]
    rt.check_texts([inputs[i] for i in texts], "input", positions=texts)
    vectors: list[np.ndarray | None] = [None] * len(inputs)
    tokens, truncated = 0, []

    async def embed_texts():
        nonlocal tokens, truncated
        rows, tokens, cut = await rt.text_rows([inputs[i] for i in texts])
        truncated = [texts[k] for k in cut]
        out = await rt.text.run(rows, rt.remaining())
        for k, i in enumerate(texts):
            vectors[i] = out[k]

    async def embed_images():
        refs = [inputs[i] for i in images]
        names = [f"input[{i}]" for i in images]
        tasks = [rt.decode(rt._pixels, r, n) for r, n in zip(refs, names)]
        pixels = await asyncio.gather(*tasks)
        out = await rt.image.run(pixels, rt.remaining())
        for k, i in enumerate(images):
            vectors[i] = out[k]

    jobs = ([embed_texts()] if texts else []) + ([embed_images()] if images else [])
    await asyncio.gather(*jobs)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": encode_vector(v, body.encoding_format),
            "modality": kinds[i],
        }
        for i, v in enumerate(vectors)
    ]
    modality = kinds[0] if len(set(kinds)) == 1 else "mixed"
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model_id(rt),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "modality": modality,
            "truncated": truncated,
        }
    )


@api.post("/classify", response_model=S.ClassifyResponse)
async def classify(body: S.ClassifyRequest, request: Request):
    """Zero-shot classification: softmax over labels of logit_scale * cosine(image, label)."""
    from biomedclip.prompts import parse_labels

    rt = runtime(request)
    check_count(body.labels, rt.settings.max_labels, "labels")
    labels = parse_labels(body.labels)
    rt.check_texts(labels, "labels", rt.settings.max_template_chars)
    rt.check_prompts(labels, body.templates)  # refuse bad / too many / too long before decoding
    image, weights = await asyncio.gather(
        image_vectors(rt, [body.image], "image"), rt.classifier(tuple(labels), body.templates)
    )
    logits = rt.encoder.logit_scale * torch.from_numpy(image) @ weights.T
    probs = logits.softmax(dim=-1)[0].tolist()
    ranked = sorted(zip(labels, probs), key=lambda lp: -lp[1])[: body.top_k or len(labels)]
    return JSONResponse(
        {
            "model": model_id(rt),
            "probabilities": [{"label": lab, "probability": p} for lab, p in ranked],
        }
    )


def _query_kind(body: S.SearchRequest) -> str:
    given = [k for k in ("text", "image", "embedding", "item") if getattr(body, k) is not None]
    if len(given) != 1:
        raise InputError(
            f"give exactly one of text, image, embedding or item (got {', '.join(given) or 'none'})"
        )
    return given[0]


def index_call(fn, *args):
    """Call the server's index: its errors are server faults (500), not the client's (the
    request's own values are checked before)."""
    try:
        return fn(*args)
    except BiomedCLIPError as e:
        raise ServerFault(f"the index failed: {e}", "index_error") from e


def _row_image(rt: Runtime, row: int) -> Path:
    index = rt.searcher.index
    if row >= len(index):
        raise InputError(f"item {row}: the index has {len(index)} rows")
    meta = index_call(lambda: index.metadata().slice(row, 1).to_pylist()[0])
    path = meta.get("path")
    if not path or meta.get("modality") == "text":
        raise InputError(f"item {row} ({meta.get('id')}) has no image")
    return Path(path)


SEARCH_LINKS = {  # OpenAPI links: what a client (and schemathesis' stateful phase) can do next
    "SearchByHitImage": {
        "operationId": "search_v1_search_post",
        "requestBody": {"item": "$response.body#/hits/0/row", "top_k": 3},
        "description": "search by the image of the first hit",
    },
    "ThumbnailOfHit": {
        "operationId": "thumbnail_v1_items__row__thumbnail_get",
        "parameters": {"row": "$response.body#/hits/0/row"},
        "description": "the first hit's thumbnail",
    },
}


@api.post(
    "/search",
    response_model=S.SearchResponse,
    responses={200: {"description": "hits", "links": SEARCH_LINKS}},
)
async def search(body: S.SearchRequest, request: Request):
    """Nearest index rows to a text, an image, a vector, or the image of an index row."""
    rt = runtime(request)
    if rt.searcher is None:
        raise InputError("no index loaded: start the server with --index DIR")
    kind = _query_kind(body)
    check_range(body.top_k, rt.settings.max_top_k, "top_k")
    if kind == "text":
        query = (await text_vectors(rt, [body.text]))[0]
    elif kind == "image":
        query = await image_vectors(rt, [body.image], "image")
    elif kind == "item":
        path = await rt.offload(_row_image, rt, body.item)
        query = await image_vectors(rt, [path], "item")
    else:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
            query = np.asarray(body.embedding, dtype=np.float32)[None]
        if query.shape[1] != rt.dim or not np.isfinite(query).all() or not np.abs(query).sum():
            raise InputError(f"embedding: need {rt.dim} finite numbers, not all zero")
    where = {"modality": body.modality} if body.modality else None
    hits = await rt.offload(index_call, rt.searcher.search_vectors, query, body.top_k, where)
    out = []
    for h in hits[0]:
        meta = h.metadata
        caption = meta.get("caption") or meta.get("text")
        path = meta.get("path")
        out.append(
            {
                "rank": h.rank,
                "id": h.id,
                "score": h.score,
                "row": h.row,
                "modality": meta.get("modality"),
                "path": path,
                "caption": caption,
                "has_image": bool(path) and meta.get("modality") != "text",
                "thumbnail": (
                    thumbnail_url(request, h.row)
                    if path and meta.get("modality") != "text"
                    else None
                ),
            }
        )
    return JSONResponse({"model": model_id(rt), "query": kind, "hits": out})


@public.get(
    "/items/{row}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"}},
)
async def thumbnail(
    row: int,
    request: Request,
    size: int = 256,
    exp: int | None = None,
    sig: str | None = None,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
):
    """A JPEG thumbnail of the image of an index row (for the browser app's result grid).

    With an API key: ``Authorization: Bearer KEY``, or the short-lived signed URL of a search hit
    (``exp``, ``sig``)."""
    key = request.app.state.settings.api_key
    if not _key_ok(request, bearer):
        signed = (
            exp is not None
            and sig is not None
            and exp >= time.time()
            and hmac.compare_digest(sig, _signature(key, row, size, exp))
        )
        if not signed:
            raise Unauthorized("missing or invalid API key or expired thumbnail signature")
    rt = runtime(request)
    if rt.searcher is None:
        raise InputError("no index loaded: start the server with --index DIR")
    if row < 0 or not 16 <= size <= 1024:
        raise InputError("row must be >= 0 and size within 16..1024")

    def render() -> bytes:
        import io

        image = rt.resolver.image(_row_image(rt, row), f"item {row}").convert("RGB")
        image.thumbnail((size, size))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=85)
        return buf.getvalue()

    data = await rt.decode(render)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"}
    )


@api.post("/explain", response_model=S.ExplainResponse)
async def explain(body: S.ExplainRequest, request: Request):
    """Heatmap of where the text matches the image (PNG overlay + the raw patch grid)."""
    from biomedclip.explain import overlay, png_bytes

    rt = runtime(request)
    slots = request.app.state.explain_slots
    if slots.locked():
        raise QueueFull("explain", 2.0)
    async with slots:
        rt.check_texts([body.text], "text")
        image = await rt.decode(rt.resolver.image, body.image, "image")
        ex = await rt.offload(rt.explain, image, body.text, body.method)
        png = await rt.offload(lambda: png_bytes(overlay(ex.view, ex.grid, body.alpha)))
    return JSONResponse(
        {
            "model": model_id(rt),
            "text": ex.text,
            "method": ex.method,
            "score": ex.score,
            "grid": ex.grid.round(6).tolist(),
            "png": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
    )


@api.get("/models", response_model=S.ModelList)
async def models(request: Request):
    """The served model: id, weights sha256, embedding size, context length, index."""
    rt = runtime(request)
    card = {
        "id": model_id(rt),
        "object": "model",
        "owned_by": "biomedclip",
        "sha256": rt.sha256,
        "dimensions": rt.dim,
        "context_length": rt.context_length,
        "image_size": int(rt.model.config.preprocess.image_size),
        "index": rt.settings.index,
        "index_size": len(rt.searcher.index) if rt.searcher else None,
        "backend": rt.encoder.provenance() if hasattr(rt.encoder, "provenance") else None,
    }
    return {"object": "list", "data": [card]}


# ---- operations ------------------------------------------------------------------------------
@ops.get("/health/live", response_model=S.Health, tags=["operations"])
async def live():
    """The process answers."""
    return {"status": "ok"}


@ops.get(
    "/health/ready",
    response_model=S.Health,
    tags=["operations"],
    responses={503: {"model": S.Health, "description": "loading or failed"}},
)
async def ready(request: Request):
    """200 once the model is loaded and warmed and both batch workers run; 503 while loading,
    after a failed load (the process then exits non-zero) or when a batch worker died."""
    rt: Runtime = request.app.state.runtime
    if rt.healthy:
        return {"status": "ok"}
    if rt.error or rt.ready:
        detail = rt.error or "a batch worker is not running"
        return JSONResponse({"status": "error", "detail": detail}, status_code=503)
    return JSONResponse({"status": "loading", "detail": None}, status_code=503)


@ops.get(
    "/metrics",
    response_class=Response,
    tags=["operations"],
    dependencies=[Depends(require_api_key)],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request):
    """Prometheus metrics: requests and latency per route, batch sizes, queue depth, load time."""
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
