"""What one task run produced: its outcome, the failure in words, its outputs."""

from __future__ import annotations

import datetime as dt
import signal as signals
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class TaskOutcome(StrEnum):
    """The final state the engine reports for a task run."""

    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"


class FailureKind(StrEnum):
    """Why a run or task failed, as SPEC.md names it; :data:`FAILURE_WORDS` says it in words."""

    invalid_input = "invalid_input"
    model_error = "model_error"
    timeout = "timeout"
    out_of_memory = "out_of_memory"
    resource_limit = "resource_limit"
    infrastructure = "infrastructure"
    cancelled = "cancelled"


FAILURE_WORDS = {
    FailureKind.invalid_input: "the input was refused before the model ran",
    FailureKind.model_error: "the model reported an error",
    FailureKind.timeout: "the task ran out of time",
    FailureKind.out_of_memory: "the model ran out of memory",
    FailureKind.resource_limit: "the model went over a resource limit",
    FailureKind.infrastructure: "the platform failed (not the model); it is retried",
    FailureKind.cancelled: "the run was cancelled",
}


def how_it_ended(exit_code: int | None, signal: int | None) -> str:
    """``exit code 201``, ``killed by SIGKILL (signal 9)``, or ``""`` when neither is known."""
    if signal is not None:
        try:
            name = signals.Signals(signal).name
        except ValueError:
            return f"killed by signal {signal}"
        return f"killed by {name} (signal {signal})"
    if exit_code is not None:
        return f"exit code {exit_code}"
    return ""


@dataclass(frozen=True)
class OutputFile:
    """One collected output: its path in the working directory, size and sha256."""

    path: str
    size: int
    sha256: str
    source: Path


@dataclass
class Failure:
    """Why a task failed: the kind, one sentence, the model's own error lines, the log's end."""

    kind: FailureKind
    reason: str
    error_lines: list[str] = field(default_factory=list)
    log_tail: str = ""

    def summary(self, task: str) -> str:
        """The failure in plain words, ready to show a modeller."""
        parts = [f"Task {task!r} failed: {FAILURE_WORDS[self.kind]}. {self.reason}"]
        if self.error_lines:
            parts.append("The model said:")
            parts += ["  " + line.replace("\n", "\n  ") for line in self.error_lines]
        if self.log_tail:
            parts.append("Last lines of its log:")
            parts.append("  " + self.log_tail.replace("\n", "\n  "))
        return "\n".join(parts)


@dataclass
class TaskResult:
    """Everything a task run produced; the executor turns it into database state."""

    task: str
    outcome: TaskOutcome
    workdir: Path
    log_path: Path
    started_at: dt.datetime
    finished_at: dt.datetime
    exit_code: int | None = None
    signal: int | None = None  # the signal that killed the model (then exit_code is None)
    warnings: list[str] = field(default_factory=list)  # lines matching warning_patterns
    failure: Failure | None = None
    outputs: list[OutputFile] = field(default_factory=list)
    diagnostics: list[OutputFile] = field(default_factory=list)
    log_bytes: int = 0
    log_cut_bytes: int = 0
    progress: float | None = None
    peak_memory: int = 0
    cpu_seconds: float | None = None  # the command's processes, None where not measured
    copied_bytes: int = 0
    shared_bytes: int = 0

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def succeeded(self) -> bool:
        return self.outcome is TaskOutcome.succeeded
