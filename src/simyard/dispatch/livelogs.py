"""The live log: lines of running task runs, appended to one file per attempt for followers.

Beside each file, ``….times`` records when the server captured its lines: one text line
``FIRST_LINE UNIX_TIME`` per batch appended (lines FIRST_LINE.. up to the next record's came
at that time). The log itself stays the model's own bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

MAX_COUNTED = 10_000  # attempts whose line count is kept in memory


class LiveLogs:
    """One capped file per attempt under ``root``; the stored log is the full record."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._line_counts: dict[Path, int] = {}  # lines in each file appended to so far
        root.mkdir(parents=True, exist_ok=True)

    def path(self, task_run_id: int, attempt: int) -> Path:
        return self.root / f"{task_run_id}.a{attempt}.log"

    def times_path(self, task_run_id: int, attempt: int) -> Path:
        return self.root / f"{task_run_id}.a{attempt}.times"

    def append(
        self, task_run_id: int, attempt: int, lines: list[str], at: float | None = None
    ) -> None:
        """Add ``lines``, captured at ``at`` (Unix time; now when not given)."""
        path = self.path(task_run_id, attempt)
        size = path.stat().st_size if path.exists() else 0
        if size >= self.max_bytes or not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8", errors="replace")
        if size + len(data) > self.max_bytes:
            data = data[: self.max_bytes - size] + b"\n[simyard: live log capped here]\n"
        before = self._line_counts.get(path)
        if before is None:  # first append since this server started: count what is there
            before = path.read_bytes().count(b"\n") if size else 0
        with open(path, "ab") as handle:
            handle.write(data)
        if len(self._line_counts) >= MAX_COUNTED:  # forgotten ones are counted again
            self._line_counts.clear()
        self._line_counts[path] = before + data.count(b"\n")
        with open(self.times_path(task_run_id, attempt), "a", encoding="ascii") as handle:
            handle.write(f"{before + 1} {time.time() if at is None else at:.3f}\n")

    def times(
        self, task_run_id: int, attempt: int, offset: int = 0
    ) -> tuple[list[tuple[int, float]], int]:
        """(first line number, capture time) of each batch of the attempt's live log from
        byte ``offset`` of its record, and the offset to read on from."""
        path = self.times_path(task_run_id, attempt)
        if not path.exists():
            return [], offset
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a record being written is read next time
        found = []
        for record in complete.decode("ascii", errors="replace").splitlines():
            first, _, at = record.partition(" ")
            try:
                found.append((int(first), float(at)))
            except ValueError:
                continue  # a record cut short by a crash while it was written
        return found, offset + len(complete)
