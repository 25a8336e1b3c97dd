"""Mount the web pages on the FastAPI app: sessions, static files, the chart library, pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware

from simyard.domain.tables import User
from simyard.web.pages import (
    account,
    admin,
    audit,
    auth,
    compare,
    models,
    newrun,
    preview,
    projects,
    run,
    runs,
    settings,
    shares,
    sweeps,
    usage,
)
from simyard.web.pages.common import LoginRequired, PasswordChangeRequired
from simyard.web.pages.sso import mount_sso
from simyard.web.session import PASSWORD_PAGE, session_user_id
from simyard.web.templating import render
from simyard.web.vendor import API_DOCS_PAGE, plotly_js, plotly_styles, swagger_ui_assets
from simyard.wiring import Platform, secret_key

STATIC = Path(__file__).parent / "static"


def mount_web(app: FastAPI, platform: Platform) -> None:
    """Add the browser side to ``app``."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key(platform.settings),
        session_cookie="simyard_session",
        same_site="lax",
        https_only=platform.settings.base_url.startswith("https://"),
        max_age=int(platform.settings.session_max_age),
    )
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (auth, account, models, runs, compare, run, shares, preview, newrun, sweeps,
                   admin, projects, audit, settings, usage):  # fmt: skip
        app.include_router(module.router, include_in_schema=False)
    mount_sso(app, platform.settings)  # single sign-on with OpenID Connect

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def chart_library() -> Response:
        path = plotly_js()
        if path is None:
            raise HTTPException(404, detail="plotly is not installed")
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=604800"})  # fmt: skip

    @app.get("/vendor/plotly.css", include_in_schema=False)
    def chart_styles() -> Response:
        return Response(plotly_styles().css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=604800"})  # fmt: skip

    swagger = swagger_ui_assets()
    if swagger is not None:
        app.mount("/vendor/swagger-ui", StaticFiles(directory=swagger), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> Response:
        """The API's documentation, rendered in the browser with nothing from the internet."""
        if swagger is None:
            raise HTTPException(404, detail="fastapi-offline (Swagger UI's files) is not installed")
        return HTMLResponse(API_DOCS_PAGE)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def to_password_page(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse(PASSWORD_PAGE, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A page for people asking for HTML; the API's JSON shape for everyone else."""
        wants_html = "text/html" in request.headers.get("accept", "")
        if request.url.path.startswith("/api/") or not wants_html or exc.status_code < 400:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))  # fmt: skip
        # The navigation stays, so a person who took a wrong turn can go on from here.
        try:
            platform = request.app.state.platform
            with platform.readers() as db:
                user_id = session_user_id(request, platform)
                user = None if user_id is None else db.get(User, user_id)
                return render(
                    request, "error.html", user, status=exc.status_code, detail=exc.detail,
                    status_code=exc.status_code,
                )  # fmt: skip
        except SQLAlchemyError:  # the database is down: the page without the navigation
            return render(
                request, "error.html", None, status=exc.status_code, detail=exc.detail,
                status_code=exc.status_code,
            )  # fmt: skip


__all__ = ["HTMLResponse", "mount_web"]
