"""Third-party browser assets, served by simyard from the Python packages that ship them.

Nothing is loaded from the internet. plotly.js injects style sheets at run time, which
the Content-Security-Policy (no inline style) blocks; so the page links one style sheet
with those rules instead, read from the installed plotly.min.js itself (they always match
the library served), and carries elements with the ids plotly.js checks before it
injects anything.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

GLOBAL_STYLE_ID = "plotly.js-style-global"  # with class no-inline-styles: plotly adds no rules
_QUOTED = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_RULE = re.compile(rf"({_QUOTED})\s*:\s*({_QUOTED})")
# A bundled library's own CSS: injected once unless an element with its id exists.
_INJECTED = re.compile(
    r'getElementById\("([0-9a-f]{16,})"\)\)\{var (\w+)=document\.createElement\("style"\);'
    r"\2\.id=\"\1\",\2\.textContent=('(?:[^'\\]|\\.)*')"
)


def plotly_js() -> Path | None:
    """plotly.js as shipped inside the ``plotly`` wheel."""
    try:
        import plotly
    except ImportError:  # pragma: no cover - a dependency; plots show as tables without it
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def swagger_ui_assets() -> Path | None:
    """Swagger UI's script and style sheet, as shipped in the ``fastapi-offline`` wheel."""
    try:
        import fastapi_offline
    except ImportError:  # pragma: no cover - a dependency; /docs says so without it
        return None
    return Path(fastapi_offline.__file__).parent / "static"


@dataclass(frozen=True)
class PlotlyStyles:
    """The style sheet plotly.js would inject, and the ids of the elements that stop it."""

    css: str
    injected_ids: tuple[str, ...]


@functools.cache
def plotly_styles() -> PlotlyStyles:
    """Read once from the installed plotly.min.js."""
    path = plotly_js()
    if path is None:
        return PlotlyStyles("", ())
    source = path.read_text(encoding="utf-8")
    rules = []
    start = source.find('{"X,X div"')  # plotly's own rules: X is the plot, Y the notifier
    end = source.find("}", source.find('"Y ', start)) if start >= 0 else -1
    if start >= 0 and end >= 0:
        for selector, body in _RULE.findall(source[start : end + 1]):
            plot, notifier = ".js-plotly-plot .plotly", ".plotly-notifier"
            full = selector[1:-1].replace("X", plot).replace("Y", notifier)
            rules.append(f"{full} {{{_unquote(body)}}}")
    ids = []
    for found in _INJECTED.finditer(source):
        ids.append(found.group(1))
        rules.append(_unquote(found.group(3)))
    return PlotlyStyles("\n".join(rules) + "\n", tuple(ids))


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


API_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>simyard API</title>
<link rel="stylesheet" href="/vendor/swagger-ui/swagger-ui.css">
<script src="/vendor/swagger-ui/swagger-ui-bundle.js" defer></script>
<script src="/static/api-docs.js" defer></script></head>
<body><div id="swagger-ui" data-openapi="/openapi.json"></div></body></html>
"""
