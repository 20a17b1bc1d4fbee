"""Input limits: admission (payload, concurrency, deadline; an ASGI middleware), field checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from contextvars import ContextVar

from biomedclip.errors import InputError

# time.monotonic() by which the request being handled must be answered (set by Admission; the
# tasks a handler starts inherit it)
DEADLINE: ContextVar[float | None] = ContextVar("biomedclip_request_deadline", default=None)


def remaining(default: float) -> float:
    """Seconds left before this request's deadline (``default`` outside a request)."""
    deadline = DEADLINE.get()
    return default if deadline is None else max(deadline - time.monotonic(), 0.0)


class PayloadTooLarge(InputError):
    """The request body or one of its parts exceeds a configured limit (HTTP 413)."""


def json_error(status: int, message: str, code: str, headers: dict | None = None):
    """The ASGI messages of a JSON error (for middleware that answers before the app)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = json.dumps(
        {"error": {"message": message, "type": kind, "code": code, "param": None}}
    ).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    )


class _Overflow(Exception):
    """Raised from ``receive`` when the body grows past the payload limit."""


class Admission:
    """ASGI middleware bounding every request before the app sees it.

    * ``max_bytes``: a declared or streamed body beyond it gets 413 (the body is never buffered
      here: the app reads it as it arrives, and reading stops at the limit);
    * ``max_concurrent``: /v1 requests in flight beyond it get 429 + Retry-After at once;
    * ``timeout_s``: the whole request (body upload, decode, queue, compute, response start) must
      finish within it: 408 when the client had not sent its whole body by then (a slow client),
      else 429 + Retry-After (the service is overloaded). The cancelled handler cancels its
      batch rows; a decode already running finishes in its slot (bounded by the decode slots).
    """

    def __init__(self, app, max_bytes: int, max_concurrent: int, timeout_s: float, metrics=None):
        self.app, self.max_bytes = app, max_bytes
        self.max_concurrent, self.timeout_s, self.metrics = max_concurrent, timeout_s, metrics
        self.active = 0

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()

    async def _answer(self, send, status: int, message: str, code: str, headers=None) -> None:
        start, body = json_error(status, message, code, headers)
        await send(start)
        await send(body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = f"request body exceeds the payload limit of {self.max_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            self._reject("payload_too_large")
            return await self._answer(send, 413, too_large, "payload_too_large")
        limited = scope["path"].startswith("/v1/")
        if limited and self.active >= self.max_concurrent:
            self._reject("overloaded")
            return await self._answer(
                send,
                429,
                f"{self.active} requests in flight (the limit is {self.max_concurrent}): retry",
                "overloaded",
                {"Retry-After": "1"},
            )
        state = {"size": 0, "body_done": False, "overflow": False, "started": False}

        async def guarded_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["size"] += len(message.get("body", b""))
                if state["size"] > self.max_bytes:
                    state["overflow"] = True
                    raise _Overflow(too_large)
                if not message.get("more_body", False):
                    state["body_done"] = True
            return message

        async def guarded_send(message):
            if state["overflow"]:  # the app turned our _Overflow into its own error: replace it
                if not state["started"]:
                    state["started"] = True
                    self._reject("payload_too_large")
                    await self._answer(send, 413, too_large, "payload_too_large")
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        self.active += limited
        token = DEADLINE.set(time.monotonic() + self.timeout_s)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, guarded_receive, guarded_send)
        except _Overflow:
            if not state["started"]:
                self._reject("payload_too_large")
                await self._answer(send, 413, too_large, "payload_too_large")
        except TimeoutError:
            if state["started"]:
                raise
            if not state["body_done"] and scope["method"] in ("POST", "PUT"):
                self._reject("slow_client")
                await self._answer(
                    send,
                    408,
                    f"request body not received within {self.timeout_s:g} s",
                    "timeout",
                    {"Connection": "close"},  # the rest of the body will not be read
                )
            else:
                self._reject("timeout")
                await self._answer(
                    send,
                    429,
                    f"no answer within the request timeout of {self.timeout_s:g} s "
                    "(the service is busy)",
                    "timeout",
                    {"Retry-After": "2"},
                )
        finally:
            DEADLINE.reset(token)
            self.active -= limited


def check_count(items: Sequence, limit: int, name: str, minimum: int = 1) -> None:
    if len(items) < minimum:
        raise InputError(f"{name}: give at least {minimum}")
    if len(items) > limit:
        raise PayloadTooLarge(f"{name}: {len(items)} given, the limit is {limit}")


def check_range(value: int, limit: int, name: str) -> None:
    if value > limit:
        raise InputError(f"{name}={value}: the limit is {limit}")
