"""The executor contract: told what to run, it reports what happened; the database decides.

An executor implements four methods. ``submit`` starts one attempt (a WorkOrder) and
returns at once; ``cancel`` asks the attempt's process tree to stop; ``poll`` hands
back what happened since the last call (lines, progress, heartbeats, results, lost
attempts); ``close`` stops everything. The dispatcher claims an attempt in the
database before submitting it and ignores events of attempts that are not current.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simyard.engine.workorder import WorkOrder


class EventKind(StrEnum):
    started = "started"  # payload: {"worker": str}
    lines = "lines"  # payload: {"lines": [str, ...]}
    progress = "progress"  # payload: {"percent": float}
    heartbeat = "heartbeat"  # payload: {}
    result = "result"  # payload: {"result": WorkResult}
    lost = "lost"  # payload: {"reason": str}; the attempt died without a result


@dataclass(frozen=True)
class ExecutorEvent:
    task_run_id: int
    attempt: int
    kind: EventKind
    payload: dict[str, Any]


class Executor(ABC):
    """Runs work orders somewhere; see the module docstring for the duties."""

    slots: int

    @abstractmethod
    def submit(self, order: WorkOrder) -> None: ...

    @abstractmethod
    def cancel(self, task_run_id: int, attempt: int) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[ExecutorEvent]: ...

    @abstractmethod
    def close(self) -> None: ...
