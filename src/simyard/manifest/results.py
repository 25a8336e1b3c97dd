"""Read a run's metrics, as the manifest's ``results.metrics`` declares them, from its files."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simyard.manifest.placeholders import pick_file
from simyard.manifest.schema import Manifest, Metric

MAX_METRIC_SOURCE = 64 * 2**20  # never read more than this of one file for a metric


def metric_source(
    metric: Metric, files: Mapping[str, Path], params: Mapping[str, Any] | None = None
) -> str | None:
    """Which of ``files`` (output paths) a metric's ``file`` names, placeholders filled and
    a glob's last match in natural order taken; None for a log's metric or no such file."""
    if metric.file is None:
        return None
    return pick_file(metric.file, params or {}, files)


def read_metric(
    metric: Metric,
    files: Mapping[str, Path],
    logs: Mapping[str, Path],
    params: Mapping[str, Any] | None = None,
) -> Any:
    """One metric's value, or None when its file, key or pattern is not there."""
    if metric.file is not None:
        chosen = metric_source(metric, files, params)
        source = files.get(chosen) if chosen is not None else None
    else:
        source = logs.get(metric.log or "")
    if source is None or not source.is_file():
        return None
    with open(source, "rb") as handle:
        data = handle.read(MAX_METRIC_SOURCE)
    text = data.decode("utf-8", errors="replace")
    if metric.column is not None:
        return _column_value(metric, text)
    if metric.key is not None:
        try:
            value: Any = json.loads(text)
        except ValueError:
            return None
        for part in metric.key.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value if isinstance(value, int | float | str | bool) else None
    assert metric.pattern is not None
    matches = list(re.finditer(metric.pattern, text, re.MULTILINE))
    if not matches:
        return None
    raw = matches[-1].group(1)
    try:
        number = float(raw)
    except ValueError:
        return raw
    value = int(number) if re.fullmatch(r"[+-]?[0-9]+", raw.strip()) else number
    return _rounded(value, metric.digits)


def table_rows(text: str, delimiter: str) -> list[list[str]]:
    """The rows of a table file, the header first: ``#`` comment lines and blank lines
    skipped, cells split at ``delimiter`` (one character, CSV quoting) or at any run of
    blanks (``whitespace``). When the first row holds only numbers, the last comment line
    before it is the header (OpenFOAM's ``# Time Cd Cl``)."""
    header: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            if not lines:
                header = line.lstrip()[1:]
            continue
        lines.append(line)
    rows = _split(lines, delimiter)
    if header is not None and rows and all(_is_number(cell) for cell in rows[0]):
        rows = _split([header], delimiter) + rows
    return rows


def _split(lines: list[str], delimiter: str) -> list[list[str]]:
    if delimiter == "whitespace":
        return [line.split() for line in lines]
    return [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column_value(metric: Metric, text: str) -> Any:
    rows = table_rows(text, metric.delimiter)
    if not rows or metric.column not in rows[0]:
        return None
    index = rows[0].index(metric.column)
    values = []
    for row in rows[1:]:
        try:
            number = float(row[index])
        except (IndexError, ValueError):
            continue
        if math.isfinite(number):
            values.append(number)
    agg = metric.agg or "last"
    if agg == "count":
        return len(values)
    if not values:
        return None
    picked = {
        "max": max(values),
        "min": min(values),
        "first": values[0],
        "last": values[-1],
        "mean": sum(values) / len(values),
    }[agg]
    return _rounded(picked, metric.digits)


def _rounded(value: Any, digits: int | None) -> Any:
    if digits is None or not isinstance(value, float):
        return value
    return round(value, digits)


def read_metrics(
    manifest: Manifest,
    files: Mapping[str, Path],
    logs: Mapping[str, Path],
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every declared metric; ``files`` maps output paths to files, ``logs`` task names to logs."""
    return {
        name: read_metric(metric, files, logs, params)
        for name, metric in manifest.results.metrics.items()
    }
