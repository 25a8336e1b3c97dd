"""Read a run's metrics, as the manifest's ``results.metrics`` declares them, from its files."""

from __future__ import annotations

import json
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
    return int(number) if re.fullmatch(r"[+-]?[0-9]+", raw.strip()) else number


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
