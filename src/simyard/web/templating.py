"""Jinja2 templates with the helpers every page uses (user, CSRF token, Markdown, sizes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

from simyard.domain.tables import User
from simyard.manifest.units import format_size
from simyard.notify.base import shown_target
from simyard.times import utc_text
from simyard.web.session import CSRF_FIELD, csrf_token
from simyard.web.vendor import GLOBAL_STYLE_ID, plotly_styles

TEMPLATES = Path(__file__).parent / "templates"
# CommonMark with raw HTML switched off: a model description cannot inject markup or script.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(text: str | None) -> Markup:
    """Sanitised HTML from a model owner's Markdown."""
    return Markup(_markdown.render(text or ""))  # noqa: S704 - raw HTML is disabled above


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """``1 h 02 min``, ``3.2 s``; empty when unknown."""
    if start is None:
        return ""
    end = end or dt.datetime.now(dt.UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(value: dt.datetime | None) -> str:
    """A timestamp as ``2026-11-28 14:03`` (UTC)."""
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters.update(markdown=markdown, size=format_size, when=when, utc=utc_text)
templates.env.globals.update(
    duration=duration, csrf_field=CSRF_FIELD, shown_target=shown_target,
    plotly_styles=plotly_styles, plotly_global_style=GLOBAL_STYLE_ID,
)  # fmt: skip


def render(
    request: Request, name: str, user: User | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page; every page gets the user and the CSRF token."""
    context |= {"user": user, "csrf": csrf_token(request)}
    return templates.TemplateResponse(request, name, context, status_code=status_code)
