"""Wakes this process's followers the moment the dispatcher recorded something.

A follower (the server-sent events of a run's events or of a task's live log) reads, then
waits until the next change of the kind it shows or its poll interval, whichever comes
first. On the server holding the dispatcher's lease it hears every commit and every batch
of live lines at once: a client following a run learns of its end a few milliseconds
after the commit, not up to an interval later. On another server (a standby) nothing
wakes it, and it reads at its interval as before. While much changes, a follower reads at
most once per ``MIN_SPACING``: a wake is for every run, and a busy server commits far
more often than any one run changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from dataclasses import dataclass

MIN_SPACING = 0.01  # seconds from one read of a follower to its next, at least


class Change(enum.Enum):
    recorded = "recorded"  # a transaction of the dispatcher committed (states, events)
    logged = "logged"  # lines were appended to a live log


@dataclass(frozen=True, slots=True)
class Seen:
    """What a follower had seen when it read: the count of changes of each kind, and when."""

    counts: tuple[int, ...]
    at: float


class Changes:
    """Counts of changes and the followers waiting for the next ones, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(Change, 0)
        self._waiting: dict[Change, set[asyncio.Future[None]]] = {k: set() for k in Change}

    def seen(self) -> Seen:
        """Taken before a follower reads; it waits past it after."""
        with self._lock:
            return Seen(tuple(self._counts.values()), time.monotonic())

    def changed(self, kind: Change) -> None:
        """A change of ``kind`` was made: wake every follower waiting for one."""
        with self._lock:
            self._counts[kind] += 1
            waiting, self._waiting[kind] = self._waiting[kind], set()
        for woken in waiting:
            # Never raises into the dispatcher, which calls this between its commit and
            # handing the claimed orders on: a follower's loop may have closed meanwhile.
            with contextlib.suppress(RuntimeError):
                woken.get_loop().call_soon_threadsafe(_wake, woken)

    async def wait(self, seen: Seen, timeout: float, *kinds: Change) -> None:
        """Return once there was a change of one of ``kinds`` after ``seen``, but not
        before ``MIN_SPACING`` after it, or after ``timeout`` seconds."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            now = tuple(self._counts.values())
            changed = any(now[i] != seen.counts[i] for i, k in enumerate(Change) if k in kinds)
            if not changed:
                for kind in kinds:
                    self._waiting[kind].add(woken)
        if not changed:
            try:
                await asyncio.wait([woken], timeout=timeout)
            finally:
                with self._lock:
                    for kind in kinds:
                        self._waiting[kind].discard(woken)
        rest = seen.at + MIN_SPACING - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
