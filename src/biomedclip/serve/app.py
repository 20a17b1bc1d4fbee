"""The application factory (:func:`create_app`) and the uvicorn runner (:func:`serve`).

Start-up returns at once and loads the model in a thread: ``/health/live`` answers immediately,
``/health/ready`` once the model is loaded and warm (the /v1 routes answer 503 until then). A
failed load makes ``/health/ready`` answer 503 ``error`` and :func:`serve` exit non-zero (an
orchestrator restarts or reports it; nothing retries forever). Shut-down (SIGINT/SIGTERM) stops
accepting connections, lets in-flight requests finish (uvicorn), then drains the batch queues.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from biomedclip import __version__
from biomedclip.serve import errors, routes, slides
from biomedclip.serve.config import ServeSettings
from biomedclip.serve.limits import Admission
from biomedclip.serve.metrics import METHODS, Metrics
from biomedclip.serve.runtime import Runtime

log = logging.getLogger("biomedclip.serve")
STATIC = Path(__file__).parent / "static"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DESCRIPTION = """\
BiomedCLIP (ViT-B/16 + PubMedBERT) as a service: OpenAI-shaped embeddings, zero-shot
classification, index search and explanations, with dynamic batching.
**Research use only**: the model card places clinical deployment out of scope.
"""


def create_app(
    settings: ServeSettings | None = None, load: bool = True, echo_request_id: bool = True
) -> FastAPI:
    """A FastAPI app serving ``settings.model``; ``load=False`` leaves loading to the caller;
    ``echo_request_id=False`` when a proxy in front already returns ``X-Request-ID`` (Ray
    Serve's does: the client's id, or its own), so that a response carries exactly one."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    runtime = Runtime(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load:
            threading.Thread(target=runtime.load, name="model-load", daemon=True).start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, runtime.stop)
        log.info("batchers drained; bye")

    app = FastAPI(
        title="BiomedCLIP service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs loads Swagger UI from a CDN: served offline below
        redoc_url=None,
    )
    app.state.settings, app.state.metrics, app.state.runtime = settings, metrics, runtime
    app.state.explain_slots = asyncio.Semaphore(2)
    errors.install(app)
    app.include_router(routes.api)
    app.include_router(routes.public)
    app.include_router(routes.ops)
    slides.install(app, settings.slides)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_docs(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        request.state.request_id = rid
        start = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - start
        route = request.scope.get("route")
        name = getattr(route, "path", None) or (
            "/static" if request.url.path.startswith("/static/") else "other"
        )
        method = request.method if request.method in METHODS else "other"
        metrics.request(name, method, response.status_code, seconds)
        if echo_request_id:
            response.headers["X-Request-ID"] = rid
        log.info(
            "rid=%s %s %s -> %d in %.1f ms",
            rid,
            request.method,
            request.url.path,
            response.status_code,
            seconds * 1000,
        )
        return response

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        Admission,
        max_bytes=settings.max_body_bytes,
        max_concurrent=settings.max_concurrent_requests,
        timeout_s=settings.request_timeout_s,
        metrics=metrics,
    )
    return app


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the swagger-ui-bundle package (no CDN, works offline); without
    the package, a plain page linking /openapi.json."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path:
        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if not swagger_ui_path:
            return HTMLResponse(
                "<!doctype html><title>BiomedCLIP API</title><p>Swagger UI needs the "
                "swagger-ui-bundle package; the API schema is at "
                '<a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="BiomedCLIP service - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def configure_logging(level: str = "info") -> None:
    """Request lines (with request ids) on stderr next to uvicorn's own."""
    logger = logging.getLogger("biomedclip.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def serve(
    settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> None:
    """Run the service until SIGINT/SIGTERM (in-flight requests finish first).

    Returns the exit status: 0, or 1 when the model failed to load."""
    import uvicorn

    configure_logging(log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # our request log carries the request id
        timeout_graceful_shutdown=max(5, int(settings.request_timeout_s) + 5),
    )
    server = uvicorn.Server(config)
    failed: list[str] = []

    def fatal(error: str) -> None:
        failed.append(error)
        log.error("model load failed: %s; shutting down (exit status 1)", error)
        server.should_exit = True

    app.state.runtime.on_fatal = fatal
    server.run()
    return 1 if failed else 0
