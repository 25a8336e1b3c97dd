"""Show a local run's tasks while they run, and its outcome when it ends."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from simyard.cli.remote import show_metric
from simyard.cli.terminal import model_text
from simyard.engine.result import FAILURE_WORDS
from simyard.localrun import LocalRun, TaskState, TaskStatus
from simyard.manifest.schema import Manifest

ICONS = {
    TaskState.pending: "[dim]·[/dim]",
    TaskState.running: "[cyan]▶[/cyan]",
    TaskState.succeeded: "[green]✓[/green]",
    TaskState.failed: "[red]✗[/red]",
    TaskState.timed_out: "[red]⏱[/red]",
    TaskState.cancelled: "[yellow]■[/yellow]",
    TaskState.skipped: "[dim]↷[/dim]",
}


class TaskDisplay:
    """A live table on a terminal; one line per state change elsewhere (CI logs, pipes)."""

    def __init__(self, console: Console, manifest: Manifest) -> None:
        self.console = console
        self.statuses = {name: TaskStatus(name) for name in manifest.task_order()}
        # The runner updates one TaskStatus object in place: remember what was shown.
        self.shown: dict[str, TaskState] = {}
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None

    def __enter__(self) -> TaskDisplay:
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(kind, exc, tb)

    def update(self, status: TaskStatus) -> None:
        """Called by the runner on every change of a task."""
        with self.lock:
            previous = self.shown.get(status.name, TaskState.pending)
            self.shown[status.name] = status.state
            self.statuses[status.name] = status
            if status.state is TaskState.running and status.name not in self.started:
                self.started[status.name] = time.monotonic()
            if self.live is not None:
                self.live.update(self._render())
            elif status.state is not previous:
                took = f" in {status.result.duration:.1f} s" if status.result else ""
                self.console.print(
                    Text.assemble(
                        Text.from_markup(ICONS[status.state]),
                        model_text(f" {status.name} {status.state}{took}"),
                    )
                )

    def _elapsed(self, name: str, status: TaskStatus) -> str:
        if status.result is not None:
            return f"{status.result.duration:.1f}s"
        if name in self.started:
            return f"{time.monotonic() - self.started[name]:.1f}s"
        return ""

    def _render(self) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False)
        for name, status in self.statuses.items():
            progress = f"{status.progress:5.1f}%" if status.progress is not None else ""
            running = status.state == "running"
            line = model_text(status.last_line[:80], style="dim") if running else ""
            table.add_row(
                ICONS[status.state],
                model_text(name),
                str(status.state),
                progress,
                self._elapsed(name, status),
                line,
            )
        return table


def report_local_run(console: Console, run: LocalRun, outdir: Path | None) -> None:
    """Print the outcome (with failure summaries and metrics) and copy outputs to ``outdir``."""
    for name, status in run.tasks.items():
        for line in status.result.warnings if status.result is not None else []:
            console.print(model_text(f"warning in {name!r}: {line}", style="yellow"))
    for name, failure in run.failures():
        console.print()
        console.print(model_text(failure.summary(name), style="red" if failure else ""))
    if run.metrics:
        metrics = [model_text(f"  {k} = {show_metric(v)}") for k, v in run.metrics.items()]
        console.print(Group(*metrics))
    if outdir is not None:
        copied = copy_outputs(run, outdir)
        console.print(
            model_text(f"Outputs: {copied} file(s) copied to {outdir}/<task>/"), soft_wrap=True
        )
    outcome = "succeeded" if run.succeeded else "failed"
    words = ""
    failures = run.failures()
    if failures:
        words = f" ({FAILURE_WORDS[failures[0][1].kind]} in {failures[0][0]!r})"
    console.print(model_text(f"Run {outcome}{words}."))


def copy_outputs(run: LocalRun, outdir: Path) -> int:
    """Copy each task's outputs, diagnostics and log to ``outdir/<task>/``; the files copied."""
    count = 0
    for name, status in run.tasks.items():
        result = status.result
        if result is None:
            continue
        target = outdir / name
        for output in [*result.outputs, *result.diagnostics]:
            dest = target / output.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(output.source, dest)
            count += 1
        if result.log_path.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result.log_path, outdir / f"{name}.log")
    return count
