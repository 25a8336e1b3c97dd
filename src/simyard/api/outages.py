"""An outage answers 503 with its reason (and Retry-After), never a bare 500.

The database unreachable (PostgreSQL down, its connections gone), the embedded database
locked longer than its busy timeout or its disk full, the storage unreachable or full:
each is a state of the installation, not a bug of the request, and passes. API clients
get JSON ``{"detail": "..."}``; a browser gets a short page saying the same. The reason
names the component, never a URL or a password.
"""

from __future__ import annotations

import errno
import html
import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import exc as sa_exc

from simyard.db.session import DatabaseBusy
from simyard.storage.base import ObjectNotFound, StorageError

log = logging.getLogger("simyard.api")

RETRY_AFTER = "5"
FULL = {errno.ENOSPC, errno.EDQUOT}


class Unavailable(Exception):
    """Raised by the server itself when it cannot take a request now (e.g. its write queue
    is full): 503 with ``reason`` and Retry-After ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def database_reason(exc: BaseException) -> str:
    """What is wrong with the database, in a few words (no URL, no password)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "locked" in text or "busy" in text:
        return "database busy: the embedded database is locked by other writers"
    if "full" in text:
        return "database disk full"
    if "readonly" in text or "read-only" in text:
        return "database is read-only"
    return "database unreachable"


def outage_reason(exc: BaseException) -> str | None:
    """The reason to answer 503 for ``exc``, or None when it is no outage."""
    if isinstance(exc, Unavailable):
        return exc.reason
    if isinstance(exc, DatabaseBusy):
        return f"database busy: {exc}"
    if isinstance(exc, ObjectNotFound):
        return None
    if isinstance(exc, StorageError):
        return f"storage unreachable: {exc}"
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return database_reason(exc)
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return "database unreachable"
    if isinstance(exc, OSError) and exc.errno in FULL:
        return "disk full: the server cannot write its files"
    return None


def unavailable(request: Request, reason: str, retry_after: str = RETRY_AFTER) -> Response:
    headers = {"Retry-After": retry_after, "Cache-Control": "no-store"}
    wants_page = not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
    if wants_page:
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Unavailable - simyard"
            "</title><h1>simyard is unavailable for a moment</h1>"
            f"<p>{html.escape(reason)}.</p><p>Try again in a few seconds.</p></html>"
        )
        return HTMLResponse(page, status_code=503, headers=headers)
    return JSONResponse({"detail": reason}, status_code=503, headers=headers)


def register_outage_handlers(app: FastAPI) -> None:
    """Answer 503 with the reason for every outage, in the API and the web pages."""

    async def handler(request: Request, exc: Exception) -> Response:
        reason = outage_reason(exc)
        if reason is None:
            raise exc
        retry_after = RETRY_AFTER
        if isinstance(exc, Unavailable | DatabaseBusy):
            retry_after = str(exc.retry_after)
        log.warning("%s %s: 503, %s", request.method, request.url.path, reason)
        return unavailable(request, reason, retry_after)

    for kind in (
        Unavailable,
        DatabaseBusy,
        StorageError,
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        OSError,
    ):
        app.add_exception_handler(kind, handler)
