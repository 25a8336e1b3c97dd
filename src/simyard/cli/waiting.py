"""Waiting for a run on the command line: one live line per running task, Ctrl-C explained.

On a terminal the running tasks are shown as live lines (state, per cent, time left) that
are redrawn in place; anywhere else (a pipe, a log file, CI) a line is printed when a
task's state changes or its progress passes another tenth, so a script's log tells the
same story without escape sequences.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live

from simyard.cli.terminal import model_text, safe_chunks
from simyard.client import Client

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
NOT_STARTED = {"pending", "queued", "skipped", "cached"}
POLL_SECONDS = 0.2


def duration_words(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2 h 5 min``: a time left, rounded as people say it."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def time_left(task: dict[str, Any], now: datetime) -> float | None:
    """Seconds left for a running task, from its progress so far; None when unknown."""
    progress, started = task.get("progress"), task.get("started_at")
    if not progress or not started or progress >= 100:
        return None
    elapsed = (now - datetime.fromisoformat(started)).total_seconds()
    return elapsed * (100 - progress) / progress if elapsed > 0 else None


def task_line(task: dict[str, Any], now: datetime) -> str:
    """``  simulate: running 42% (about 12 s left)``."""
    line = f"  {task['name']}: {task['state']}"
    if task["state"] == "running" and task.get("progress") is not None:
        line += f" {task['progress']:.0f}%"
        if (left := time_left(task, now)) is not None:
            line += f" (about {duration_words(left)} left)"
    return line


def wait_for(
    api: Client, console: Console, err_console: Console, run_id: int, *, follow: bool, quiet: bool
) -> dict[str, Any]:
    """Poll until the run ends and return it. Ctrl-C stops waiting, never the run."""
    try:
        if quiet or follow or not err_console.is_terminal:
            return _wait_printing(api, console, err_console, run_id, follow=follow, quiet=quiet)
        return _wait_live(api, err_console, run_id)
    except KeyboardInterrupt:
        err_console.print(
            f"Stopped waiting. Run {run_id} goes on on the server: "
            f"`simyard runs show {run_id}` tells how it is doing, "
            f"`simyard runs cancel {run_id}` stops it.",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(130) from None


def _wait_printing(
    api: Client, console: Console, err_console: Console, run_id: int, *, follow: bool, quiet: bool
) -> dict[str, Any]:
    """A line per change of state or tenth of progress (and the live log with ``follow``)."""
    told: dict[str, tuple[str, int]] = {}
    offsets: dict[str, int] = {}
    while True:
        run = api.get_run(run_id)
        now = datetime.now(UTC)
        for task in run["tasks"]:
            if follow and task["state"] not in NOT_STARTED:
                data, offsets[task["name"]] = api.log(
                    run_id, task["name"], offsets.get(task["name"], 0)
                )
                for text in safe_chunks([data]):
                    console.out(text, end="")
            tenth = int((task.get("progress") or 0) // 10)
            if not quiet and told.get(task["name"]) != (task["state"], tenth):
                told[task["name"]] = (task["state"], tenth)
                err_console.print(model_text(task_line(task, now)), soft_wrap=True)
        if run["state"] in FINAL:
            return run
        time.sleep(POLL_SECONDS)


def _wait_live(api: Client, err_console: Console, run_id: int) -> dict[str, Any]:
    """Running tasks as lines redrawn in place; a task that ends leaves one line behind."""
    told: dict[str, str] = {}
    with Live(console=err_console, transient=True, auto_refresh=False) as live:
        while True:
            run = api.get_run(run_id)
            now = datetime.now(UTC)
            for task in run["tasks"]:
                if (
                    task["state"] not in NOT_STARTED | {"running"}
                    and told.get(task["name"]) != (task["state"])
                ):
                    told[task["name"]] = task["state"]
                    live.console.print(model_text(task_line(task, now)), soft_wrap=True)
            running = [t for t in run["tasks"] if t["state"] == "running"]
            live.update(Group(*(model_text(task_line(t, now)) for t in running)), refresh=True)
            if run["state"] in FINAL:
                return run
            time.sleep(POLL_SECONDS)
