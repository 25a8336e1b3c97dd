"""Percentiles and the tables the scenarios print: figures only, never a pass/fail exit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Latency:
    """p50/p95/p99/max of a list of durations in seconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        return cls(
            count=len(seconds),
            p50=percentile(seconds, 50),
            p95=percentile(seconds, 95),
            p99=percentile(seconds, 99),
            max=max(seconds) if seconds else float("nan"),
        )

    def row(self) -> list[str]:
        """The count and the percentiles in milliseconds, as table cells."""
        return [str(self.count), ms(self.p50), ms(self.p95), ms(self.p99), ms(self.max)]


LATENCY_COLUMNS = ["N", "p50 ms", "p95 ms", "p99 ms", "max ms"]


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal."""
    return f"{seconds * 1000:.1f}"


def against_bar(value: float, bar: float, *, at_most: bool) -> str:
    """``value / bar`` and whether the bar is met (at most / at least ``bar``)."""
    met = value <= bar if at_most else value >= bar
    mark = "[green]meets[/green]" if met else "[red]misses[/red]"
    return f"{value / bar:.2f}x the bar: {mark}"


def bar_row(bar: str, shown: str, value: float, limit: float, *, at_most: bool) -> list[str]:
    """A row of a bars table: the bar in words, the measured figure, and the ratio."""
    return [bar, shown, against_bar(value, limit, at_most=at_most)]


def latency_bar(bar: str, seconds: float, limit: float) -> list[str]:
    """A bars-table row for a latency that must stay at most ``limit`` seconds."""
    return bar_row(bar, ms(seconds), seconds, limit, at_most=True)


BAR_COLUMNS = ["SPEC.md bar", "measured", "measured / bar"]


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """A plain table: the first column left-aligned, the figures right-aligned."""
    out = Table(title=title, title_justify="left", title_style="bold")
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    return out
