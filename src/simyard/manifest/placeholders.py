"""``{name}`` placeholders and path patterns of the manifest, filled and matched in one place.

Placeholders stand for parameter values in a command, ``env``, ``stdin``, ``outputs``,
``success_requires`` and the files of ``results``; ``{{``/``}}`` are literal braces. A
result file may also be a glob (``postProcessing/*/polar.dat``): among the run's outputs
the last match in natural order counts (``time/100`` after ``time/20``), the latest
time step of a solver that writes one folder per step.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from simyard.errors import TaskRefused

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
GLOB_CHARS = frozenset("*?[")


def format_value(value: Any) -> str:
    """A parameter value as the model sees it in a command or environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return repr(value)
    return str(value)


def fill(template: str, params: Mapping[str, Any]) -> str:
    """Replace ``{name}`` with the parameter's value; TaskRefused for a name with none."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in params:
            raise TaskRefused(f"placeholder {{{name}}}: no value for parameter {name!r}")
        return format_value(params[name])

    return PLACEHOLDER.sub(replace, template)


def is_glob(path: str) -> bool:
    """Whether ``path`` is a pattern (``*``, ``?`` or ``[...]``) rather than one file."""
    return bool(GLOB_CHARS & set(path))


def path_matches(pattern: str, path: str) -> bool:
    """Whether the relative ``path`` matches ``pattern``: ``*`` stays within one folder,
    ``**`` spans any number of them."""
    return _match(pattern.strip("/").split("/"), path.strip("/").split("/"))


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _match(rest, parts[1:])


def natural_key(path: str) -> list[tuple[int, float, str]]:
    """Sort key reading runs of digits (and decimals such as 0.005) as numbers."""
    key = []
    for piece in re.split(r"([0-9]+(?:\.[0-9]+)?)", path):
        if piece and piece[0].isdigit():
            key.append((1, float(piece), piece))
        elif piece:
            key.append((0, 0.0, piece))
    return key


def pick_file(pattern: str, params: Mapping[str, Any], paths: Iterable[str]) -> str | None:
    """The file of ``paths`` that a result's ``file`` names: placeholders filled, a glob's
    last match in natural order; None when there is none (or a placeholder has no value)."""
    try:
        wanted = fill(pattern, params)
    except TaskRefused:
        return None
    if not is_glob(wanted):
        return wanted if wanted in set(paths) else None
    found = [p for p in paths if path_matches(wanted, p)]
    return max(found, key=natural_key) if found else None
