"""Every error the service returns is JSON: ``{"error": {"message", "type", "code", "param"}}``.

Status codes follow embedding servers (TEI): 4xx blame the request (400 bad input, 401 key,
408 slow client, 413 too large, 415 unknown format, 422 schema or a template outside the grammar,
429 overloaded + Retry-After),
424 the model failed on an input, 500 a server fault (corrupt index, missing server package, bug),
503 only while not ready (loading; without Retry-After after a failed load).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from biomedclip.errors import (
    BiomedCLIPError,
    ImageDependencyError,
    ImageError,
    ImageTooLargeError,
    InputError,
    TokenizerError,
    UnsupportedFormatError,
)
from biomedclip.prompts import PromptTooLongError, TemplateError
from biomedclip.serve.batching import BatcherStopped, QueueFull, RequestTimeout, RowFailed
from biomedclip.serve.limits import PayloadTooLarge

log = logging.getLogger("biomedclip.serve")


class NotReady(Exception):
    """The model is still loading (``retry``) or failed to load / lost a worker (no retry)."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class ServerFault(Exception):
    """The server's own data or installation failed (a corrupt index): 500, never the client's."""

    def __init__(self, message: str, code: str = "server_error"):
        super().__init__(message)
        self.code = code


class Unauthorized(Exception):
    """Missing or wrong API key."""


def error_response(
    status: int, message: str, code: str, param: str | None = None, headers: dict | None = None
) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(e: BiomedCLIPError) -> tuple[int, str]:
    """The status of a library error: the request's fault (4xx) or the server's (500)."""
    if isinstance(e, (ImageTooLargeError, PayloadTooLarge, PromptTooLongError)):
        return 413, "payload_too_large"
    if isinstance(e, TemplateError):
        return 422, "invalid_template"
    if isinstance(e, ImageDependencyError):
        return 500, "server_missing_dependency"
    if isinstance(e, UnsupportedFormatError):
        return 415, "unsupported_image_format"
    if isinstance(e, ImageError):
        return 400, "invalid_image"
    if isinstance(e, (InputError, TokenizerError)):
        return 400, "invalid_input"
    return 500, "server_error"  # index, checkpoint, config: never the client's fault


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into JSON errors."""

    @app.exception_handler(BiomedCLIPError)
    async def _bad_input(request: Request, e: BiomedCLIPError):
        status, code = status_of(e)
        if status >= 500:
            rid = getattr(request.state, "request_id", "-")
            log.error("request %s: server fault: %s: %s", rid, type(e).__name__, e)
            return error_response(status, f"{type(e).__name__}: {e} (request id {rid})", code)
        return error_response(status, str(e), code)

    @app.exception_handler(ServerFault)
    async def _fault(request: Request, e: ServerFault):
        rid = getattr(request.state, "request_id", "-")
        log.error("request %s: server fault: %s (%s)", rid, e, e.__cause__)
        return error_response(500, f"{e} (request id {rid})", e.code)

    @app.exception_handler(RowFailed)
    async def _row_failed(request: Request, e: RowFailed):
        return error_response(424, str(e), "backend_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
        return error_response(422, "; ".join(parts) or "invalid request", "invalid_request")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return error_response(e.status_code, str(e.detail), f"http_{e.status_code}")

    @app.exception_handler(QueueFull)
    async def _full(request: Request, e: QueueFull):
        request.app.state.metrics.rejected.labels("queue_full").inc()
        retry = {"Retry-After": str(int(e.retry_after))}
        return error_response(429, str(e), "queue_full", headers=retry)

    @app.exception_handler(RequestTimeout)
    async def _timeout(request: Request, e: RequestTimeout):
        request.app.state.metrics.rejected.labels("timeout").inc()
        return error_response(429, str(e), "timeout", headers={"Retry-After": "2"})

    @app.exception_handler(BatcherStopped)
    async def _stopping(request: Request, e: BatcherStopped):
        return error_response(503, str(e), "shutting_down")

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, e: NotReady):
        headers = {"Retry-After": "5"} if e.retry else None
        return error_response(503, str(e), "not_ready", headers=headers)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, e: Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
        return error_response(401, str(e), "invalid_api_key", headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        rid = getattr(request.state, "request_id", "-")
        log.exception("request %s failed", rid)
        return error_response(500, f"internal error (request id {rid})", "internal_error")
