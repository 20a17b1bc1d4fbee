"""Input limits: the request-body cap (an ASGI middleware) and per-field checks."""

from __future__ import annotations

import json
from collections.abc import Sequence

from biomedclip.errors import InputError


class PayloadTooLarge(InputError):
    """The request body or one of its parts exceeds a configured limit (HTTP 413)."""


class BodyLimit:
    """Reads at most ``max_bytes`` of a request body; larger bodies get a 413 JSON error."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                return await self._reject(send)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, send) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": f"request body exceeds the limit of {self.max_bytes} bytes",
                    "type": "invalid_request_error",
                    "code": "payload_too_large",
                    "param": None,
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def check_count(items: Sequence, limit: int, name: str, minimum: int = 1) -> None:
    if len(items) < minimum:
        raise InputError(f"{name}: give at least {minimum}")
    if len(items) > limit:
        raise PayloadTooLarge(f"{name}: {len(items)} given, the limit is {limit}")


def check_range(value: int, limit: int, name: str) -> None:
    if value > limit:
        raise InputError(f"{name}={value}: the limit is {limit}")
