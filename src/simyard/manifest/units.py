"""Sizes ("50MB", "4GiB") and durations ("6h", "1h30m", "90s") as written in a manifest."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "K": 2**10,
    "M": 2**20,
    "G": 2**30,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(d|h|m|s|ms)")
_DURATION_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string like ``50MB`` (10^6) or ``4GiB`` (2^30)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '50MB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).upper() in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    raise ValueError(f"not a size: {value!r} (write e.g. 500KB, 50MB, 4GiB)")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``6h``, ``1h30m``, ``90s``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '6h'")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return float(value)
    if isinstance(value, str):
        text = value.replace(" ", "")
        parts = _DURATION_PART_RE.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)
            if seconds > 0:
                return seconds
    raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 30m, 6h, 1h30m)")


def format_size(n: int) -> str:
    """A human-readable size in the units it was most likely written in: ``50 MB`` for
    50,000,000 bytes (a manifest's "50MB"), ``1.5 MiB`` for 1,572,864 or any other size."""
    decimal = _largest_unit(n, 1000, ("KB", "MB", "GB", "TB"))
    binary = _largest_unit(n, 1024, ("KiB", "MiB", "GiB", "TiB"))
    if decimal and (n * 10) % decimal[0] == 0 and not (binary and n % binary[0] == 0):
        return f"{n / decimal[0]:g} {decimal[1]}"
    if binary is None:
        return f"{n} B"
    return f"{n / binary[0]:.1f} {binary[1]}"


def _largest_unit(n: int, base: int, names: tuple[str, ...]) -> tuple[int, str] | None:
    """The largest of ``names`` (base, base², ...) that ``n`` holds at least once."""
    found = None
    for power, name in enumerate(names, start=1):
        if n >= base**power:
            found = (base**power, name)
    return found


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
