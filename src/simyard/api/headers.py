"""Security headers on every response, pages and API alike.

The Content-Security-Policy allows scripts, styles and connections from this server only
and no inline script or style, so an injected ``<script>`` or ``style=`` does nothing;
``frame-ancestors 'none'`` (and X-Frame-Options for older browsers) stops another site
from framing a page with its buttons live (clickjacking). Private answers are never
stored by a browser or a proxy; only the static assets (the same for everyone) may be.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PUBLIC_PREFIXES = ("/static/", "/vendor/")  # the same bytes for everyone: cacheable
HSTS = "max-age=31536000"


class SecurityHeaders:
    """The middleware; ``https`` adds Strict-Transport-Security (SIMYARD_BASE_URL is https)."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = str(scope.get("path", "")).startswith(PUBLIC_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A route may answer with a stricter policy of its own (an output's bytes).
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if not public:
                    headers["Cache-Control"] = "no-store"
                elif "cache-control" not in headers:
                    headers["Cache-Control"] = "no-cache"  # revalidated by its ETag
                if self.https:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, with_headers)
