"""Capture a model's output: a size-capped log file, progress, and the lines that explain a failure.

The log keeps its head until the cap's first half is used, then only a bounded tail in
memory; when the process ends the tail is written after a marker saying how much was
cut. Memory stays bounded whatever the model prints.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_LINE = 64 * 1024  # a longer "line" is cut into pieces of this size
MAX_ERROR_QUOTES = 20
MAX_WARNINGS = 20  # warning lines kept (each counted in warning_matches)
LINES_AFTER_ERROR = 2
MAX_QUOTE_LINES = 20  # a run of error lines is quoted in pieces of at most this many
TAIL_LINES = 40


@dataclass
class ErrorQuote:
    """A line that matched an error pattern, with the lines that followed it.

    A match within the window of the one before extends that quote (no line is quoted
    twice): ``remaining`` is how many more lines it takes.
    """

    line: str
    after: list[str] = field(default_factory=list)
    remaining: int = LINES_AFTER_ERROR

    def text(self) -> str:
        return "\n".join([self.line, *self.after])


class LogCapture:
    """Receives the model's output in chunks; writes the capped log and watches every line."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        error_patterns: list[str],
        progress: str | None,
        warning_patterns: list[str] | None = None,
        progress_total: float | None = None,
        on_line: Callable[[str], None] | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._head_cap = max_bytes // 2
        self._tail_cap = max_bytes - self._head_cap
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._head_written = 0
        self._tail: deque[bytes] = deque()
        self._tail_bytes = 0
        self.cut_bytes = 0
        self.total_bytes = 0
        self._partial = b""
        self._errors = [re.compile(p) for p in error_patterns]
        self._warnings = [re.compile(p) for p in warning_patterns or []]
        self.warning_lines: list[str] = []  # lines that matched: shown, the task goes on
        self.warning_matches = 0
        self._progress = re.compile(progress) if progress else None
        self._progress_total = progress_total  # the one group is the amount done out of it
        self._on_line = on_line
        self._on_progress = on_progress
        self.error_quotes: list[ErrorQuote] = []
        self.error_matches = 0
        self._open_quote: ErrorQuote | None = None
        self.last_lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.progress: float | None = None
        self.progress_at: float | None = None

    # ------------------------------------------------------------------ bytes in

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of output."""
        self.total_bytes += len(chunk)
        self._store(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        while len(self._partial) > MAX_LINE:
            lines.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        for raw in lines:
            self._line(raw)

    def _store(self, chunk: bytes) -> None:
        room = self._head_cap - self._head_written
        if room > 0:
            self._file.write(chunk[:room])
            self._head_written += min(room, len(chunk))
            chunk = chunk[room:]
        if not chunk:
            return
        self._tail.append(chunk)
        self._tail_bytes += len(chunk)
        while self._tail_bytes - len(self._tail[0]) >= self._tail_cap:
            dropped = self._tail.popleft()
            self._tail_bytes -= len(dropped)
            self.cut_bytes += len(dropped)

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.last_lines.append(line)
        matched = any(p.search(line) for p in self._errors)
        quote = self._open_quote
        if quote is not None:  # within the window of the quote before: the line is its
            quote.after.append(line)
            quote.remaining = LINES_AFTER_ERROR if matched else quote.remaining - 1
            if quote.remaining <= 0 or len(quote.after) + 1 >= MAX_QUOTE_LINES:
                self._open_quote = None
        if matched:
            self.error_matches += 1
            if quote is None and len(self.error_quotes) < MAX_ERROR_QUOTES:
                self._open_quote = ErrorQuote(line)
                self.error_quotes.append(self._open_quote)
        if self._warnings and not matched and any(p.search(line) for p in self._warnings):
            self.warning_matches += 1
            if len(self.warning_lines) < MAX_WARNINGS:
                self.warning_lines.append(line[:1000])
        if self._progress is not None:
            self._read_progress(line)
        if self._on_line is not None:
            self._on_line(line)

    def _read_progress(self, line: str) -> None:
        assert self._progress is not None
        match = self._progress.search(line)
        if not match:
            return
        try:
            numbers = [float(g) for g in match.groups()]
        except (TypeError, ValueError):
            return
        if self._progress_total is not None:
            percent = 100.0 * numbers[0] / self._progress_total
        elif len(numbers) == 1:
            percent = numbers[0]
        else:
            percent = 100.0 * numbers[0] / (numbers[1] or 1)
        self.progress = max(0.0, min(100.0, percent))
        self.progress_at = time.monotonic()
        if self._on_progress is not None:
            self._on_progress(self.progress)

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        """Flush the last partial line and write the kept tail after the cut marker."""
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        tail = b"".join(self._tail)
        if len(tail) > self._tail_cap:  # the deque holds whole chunks; trim to the cap
            self.cut_bytes += len(tail) - self._tail_cap
            tail = tail[len(tail) - self._tail_cap :]
        if self.cut_bytes:
            # Cut at a line start so the kept tail reads cleanly.
            newline = tail.find(b"\n")
            if 0 <= newline < 4096:
                self.cut_bytes += newline + 1
                tail = tail[newline + 1 :]
            marker = f"\n[simyard: {self.cut_bytes} bytes of output cut here; the end follows]\n"
            self._file.write(marker.encode())
        self._file.write(tail)
        self._file.close()

    def tail_text(self, lines: int = 20) -> str:
        """The last ``lines`` lines of output."""
        return "\n".join(list(self.last_lines)[-lines:])
