"""The FastAPI application: the API under /api/v1, health and metrics at the root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from simyard import __version__
from simyard.api import (
    audit,
    files,
    health,
    labels,
    models,
    paramfiles,
    projects,
    provenance,
    runs,
    shares,
    sweeps,
    tokens,
    usage,
    users,
)
from simyard.api.bodylimit import BodyLimits, BodySizeLimit, BodyTooLarge, too_large_body
from simyard.api.deps import problems_response, refuse_nul_characters
from simyard.api.headers import SecurityHeaders
from simyard.api.outages import register_outage_handlers
from simyard.api.schemas import API_ERRORS
from simyard.db.session import POOL_THREADS
from simyard.errors import Problem
from simyard.housekeeping import Housekeeping
from simyard.web.app import mount_web
from simyard.wiring import Platform


def create_app(platform: Platform, *, dispatch: bool = True) -> FastAPI:
    """The app for ``platform``; with ``dispatch`` it runs the dispatcher while it serves."""

    housekeeping = Housekeeping(
        sessions=platform.sessions,
        audit_retention_days=platform.settings.audit_retention_days,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = POOL_THREADS
        if dispatch:
            platform.dispatcher.start()
            platform.outbox.start()
            housekeeping.start()
        try:
            yield
        finally:
            if dispatch:
                housekeeping.stop()
                platform.outbox.stop()
                platform.dispatcher.stop()

    # /docs is served by the web side from local files (FastAPI's own loads a CDN).
    app = FastAPI(
        title="simyard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.platform = platform
    settings = platform.settings
    limits = BodyLimits(body=settings.max_request_size, upload=settings.max_upload_request_size)
    app.add_middleware(BodySizeLimit, limits=limits)
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    # A request is matched against each route in turn (twice, with FastAPI's included
    # routers): the routes read most often come first (a log was matched after 50 others).
    routers = (
        runs,
        files,
        models,
        paramfiles,
        labels,
        shares,
        projects,
        sweeps,
        provenance,
        tokens,
        users,
        audit,
        usage,
    )
    for router in (module.router for module in routers):
        app.include_router(
            router,
            prefix="/api/v1",
            responses=API_ERRORS,
            dependencies=[Depends(refuse_nul_characters)],
        )
    app.include_router(health.router)
    mount_web(app, platform)
    register_outage_handlers(app)  # the API's and the web pages' 503s

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc starts with where the value was (body, query, path, header): the field follows.
        problems = [
            Problem(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), e["msg"])
            for e in exc.errors()
        ]
        return problems_response(problems)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> Response:
        return Response(
            too_large_body(exc.detail),
            status_code=413,
            media_type="application/json",
            headers={"Connection": "close"},
        )

    return app
