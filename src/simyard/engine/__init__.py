"""The worker side: run ONE task run. Same code on every executor; knows no HTTP, no database."""

from simyard.engine.result import FailureKind, OutputFile, TaskOutcome, TaskResult
from simyard.engine.task import EngineOptions, TaskRequest, run_task

__all__ = [
    "EngineOptions",
    "FailureKind",
    "OutputFile",
    "TaskOutcome",
    "TaskRequest",
    "TaskResult",
    "run_task",
]
