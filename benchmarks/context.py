"""What the scenarios share: the console, a temp folder, one server, figures and findings."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.server import BenchServer


class Bench:
    """One benchmark session; a context manager that stops the server and removes temp files."""

    def __init__(self, console: Console, *, runs: int | None) -> None:
        self.console = console
        self.runs = runs
        self.root = Path(tempfile.mkdtemp(prefix="simyard-bench-"))
        self._findings: dict[str, int] = {}  # what looked wrong in simyard, shown at the end
        self.shared: dict[str, Any] = {}  # figures one scenario shows next to another's
        self._server: BenchServer | None = None
        self._models: set[str] = set()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def samples(self, default: int) -> int:
        """How many samples to take: ``--runs`` when given, else ``default``."""
        return self.runs or default

    def note(self, finding: str) -> None:
        """Record something that looked wrong in simyard (printed in the summary)."""
        self._findings[finding] = self._findings.get(finding, 0) + 1

    @property
    def findings(self) -> list[str]:
        """The recorded findings, each once, with how often it happened."""
        return [f if n == 1 else f"{f} ({n} times)" for f, n in self._findings.items()]

    def server(self) -> BenchServer:
        """The running server, started on first use and stopped when the session ends."""
        if self._server is None:
            server = BenchServer(self.root / "home")
            with self.console.status("starting simyard serve ..."):
                server.start()
            self._server = server
        return self._server

    def stop_server(self) -> None:
        """Stop the server (if it was started) and note the errors its log shows."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        for line in server.log_problems()[:20]:
            self.note(f"server log: {line.strip()}")

    def model(self, name: str, files: dict[str, str]) -> str:
        """Register a model (``simyard.yaml`` and its files) on the server once; its name."""
        if name not in self._models:
            folder = self.root / "models" / name
            for rel, text in files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_text(text)
            self.server().add_model(folder)
            self._models.add(name)
        return name
