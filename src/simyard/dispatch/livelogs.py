"""The live log: lines of running task runs, appended to one file per attempt for followers."""

from __future__ import annotations

from pathlib import Path


class LiveLogs:
    """One capped file per attempt under ``root``; the stored log is the full record."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def path(self, task_run_id: int, attempt: int) -> Path:
        return self.root / f"{task_run_id}.a{attempt}.log"

    def append(self, task_run_id: int, attempt: int, lines: list[str]) -> None:
        path = self.path(task_run_id, attempt)
        size = path.stat().st_size if path.exists() else 0
        if size >= self.max_bytes:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8", errors="replace")
        if size + len(data) > self.max_bytes:
            data = data[: self.max_bytes - size] + b"\n[simyard: live log capped here]\n"
        with open(path, "ab") as handle:
            handle.write(data)
