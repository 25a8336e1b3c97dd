"""The worker side: run ONE task run. Same code on every executor; knows no HTTP, no database."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simyard.engine.result import FailureKind, OutputFile, TaskOutcome, TaskResult
    from simyard.engine.task import EngineOptions, TaskRequest, run_task

# Loaded on first use, so that importing one light submodule (or the command line's
# remote commands) does not import them all.
_WHERE = {
    "FailureKind": "simyard.engine.result",
    "OutputFile": "simyard.engine.result",
    "TaskOutcome": "simyard.engine.result",
    "TaskResult": "simyard.engine.result",
    "EngineOptions": "simyard.engine.task",
    "TaskRequest": "simyard.engine.task",
    "run_task": "simyard.engine.task",
}

__all__ = [
    "EngineOptions",
    "FailureKind",
    "OutputFile",
    "TaskOutcome",
    "TaskRequest",
    "TaskResult",
    "run_task",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
