"""Cap every request body: refuse one over its limit with 413, having read no more of it.

An ASGI middleware in front of the whole app (API and pages). A declared
``Content-Length`` over the limit is refused before a byte of the body is read; a body
without one (chunked) is counted as it streams in and refused the moment it passes the
limit, so the server never holds more than the limit of any body. Multipart bodies
(uploads) have their own, larger limit; file parts go to disk, not memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simyard.manifest.units import format_size


@dataclass(frozen=True)
class BodyLimits:
    """The largest body accepted, in bytes, and the settings that set them (for the message)."""

    body: int
    upload: int
    body_setting: str = "SIMYARD_MAX_REQUEST_SIZE"
    upload_setting: str = "SIMYARD_MAX_UPLOAD_REQUEST_SIZE"

    def for_request(self, headers: Headers) -> tuple[int, str]:
        """The limit that applies to a request with ``headers`` and the setting naming it."""
        if headers.get("content-type", "").startswith("multipart/form-data"):
            return self.upload, self.upload_setting
        return self.body, self.body_setting


class BodyTooLarge(HTTPException):
    """Raised from the body stream once a request passes its limit (an HTTP 413)."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(
            413, f"the request body is over the limit of {format_size(limit)} ({setting})"
        )


def too_large_body(detail: str) -> bytes:
    """The 413 answer in the API's refusal shape."""
    return json.dumps({"errors": [{"field": "body", "message": detail}], "warnings": []}).encode()


class BodySizeLimit:
    """The middleware; ``limits`` say how large a body may be."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limits.for_request(Headers(scope=scope))
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, BodyTooLarge(limit, setting).detail)
            return
        received = 0
        answered = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # raised where no exception handler turned it into a 413
            if answered:
                raise
            await _refuse(send, exc.detail)


async def _refuse(send: Send, detail: str) -> None:
    body = too_large_body(detail)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
