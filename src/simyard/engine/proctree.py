"""A task run's process tree: see all of it in one look at the process table, kill all at once.

Each look reads ``/proc/*/stat`` once and builds the parent -> children map from it, so
its cost grows with the host's process count, not with the tree's depth times its size
(walking the children of every known process, as psutil does, took seconds per look
under a fork bomb). A process is in the tree if it descends from the root, shares the
root's session, sits in the run's control group, was seen in the tree before (a
daemonising child), runs as the uid leased for the run (see hostuser.py), or was
adopted by the attempt's own process (a subreaper running one attempt, see limits.py).

A run in a control group of its own whose processes run as a leased uid is *sealed*:
every process it starts is born in the group, and its uid may not write to any group's
``cgroup.procs`` (root's files), so none can leave. Its tree is then the group, read
from the group's own list, and a look costs the tree's size, not the host's.

Killing a tree that may still be forking is done in two steps: SIGSTOP to every member,
pass after pass until a look finds none left running (a stopped process cannot fork),
then SIGKILL to all of them. Signals go through pidfds opened while the process was
still the one seen in the table, so a pid reused in between is never hit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simyard.engine.limits import ControlGroup

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
FREEZE_PASSES = 200  # looks at the table before giving up on freezing (never reached)
GONE_TIMEOUT = 10.0  # seconds to wait for SIGKILLed processes to disappear


@dataclass(frozen=True)
class ProcessEntry:
    """One process as ``/proc/PID/stat`` shows it (and its real uid, when asked for)."""

    pid: int
    ppid: int
    session: int
    state: str
    threads: int
    start_time: int  # clock ticks after boot: tells a process from a later one with its pid
    rss: int  # bytes
    uid: int | None = None

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> ProcessEntry | None:
    """The entry of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name may hold spaces and brackets
    try:
        return ProcessEntry(
            pid=pid,
            ppid=int(fields[1]),
            session=int(fields[3]),
            state=fields[0],
            threads=int(fields[17]),
            start_time=int(fields[19]),
            rss=int(fields[21]) * _PAGE_SIZE,
        )
    except (IndexError, ValueError):
        return None


def _real_uid(pid: int) -> int | None:
    # /proc/PID/status, not the owner of /proc/PID: a process that made itself
    # non-dumpable shows root as that owner.
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open(f"/proc/{pid}/status", "rb") as f,
    ):
        for line in f:
            if line.startswith(b"Uid:"):
                return int(line.split()[1])
    return None


class ProcessTable:
    """Every process of the host, from one pass over ``/proc``."""

    def __init__(self, entries: dict[int, ProcessEntry]) -> None:
        self.entries = entries
        self.children: dict[int, list[int]] = {}
        for entry in entries.values():
            self.children.setdefault(entry.ppid, []).append(entry.pid)

    @classmethod
    def read(cls, *, with_uids: bool = False) -> ProcessTable:
        """The table now; ``with_uids`` also reads each process's real uid (slower)."""
        entries = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            entry = read_stat(int(name))
            if entry is None:
                continue
            if with_uids:
                entry = ProcessEntry(**{**entry.__dict__, "uid": _real_uid(entry.pid)})
            entries[entry.pid] = entry
        return cls(entries)

    def with_descendants(self, pids: Iterable[int]) -> set[int]:
        """``pids`` that exist and every process below them."""
        found: set[int] = set()
        stack = [p for p in pids if p in self.entries]
        while stack:
            pid = stack.pop()
            if pid not in found:
                found.add(pid)
                stack.extend(self.children.get(pid, ()))
        return found


class ProcessTree:
    """Every process a task run started: tracked so that all of it can be measured and killed.

    ``root_pid`` None with a ``uid`` is every process of that uid (a lease's leftovers).
    ``adopter``: a process whose children all belong to the run (orphans it adopted).
    """

    def __init__(
        self,
        root_pid: int | None,
        group: ControlGroup | None,
        *,
        uid: int | None = None,
        adopter: int | None = None,
    ) -> None:
        self.root_pid = root_pid
        self.group = group
        self.uid = uid
        self.adopter = adopter
        self._known: dict[int, int] = {}  # pid -> start time, seen in the tree before

    @property
    def sealed(self) -> bool:
        """Whether the control group alone holds the whole tree (see the module's text)."""
        return self.group is not None and self.uid is not None

    @classmethod
    def of(cls, entries: Iterable[ProcessEntry]) -> ProcessTree:
        """The tree of these processes and everything below them."""
        tree = cls(None, None)
        tree._known = {e.pid: e.start_time for e in entries}
        return tree

    def members(self, table: ProcessTable | None = None) -> list[ProcessEntry]:
        """The processes of the tree in ``table`` (read now when not given)."""
        if table is None:
            pids = self._own_pids()
            if pids is not None:
                return _entries(pids)
        table = table or ProcessTable.read(with_uids=False)
        entries = table.entries
        seeds = {p for p, start in self._known.items() if _same(entries.get(p), start)}
        if self.root_pid is not None:
            seeds.add(self.root_pid)
            seeds |= {e.pid for e in entries.values() if e.session == self.root_pid}
        if self.group is not None:
            seeds |= self.group.pids()
        if self.uid is not None:
            seeds |= {e.pid for e in entries.values() if e.uid == self.uid}
        if self.adopter is not None:
            seeds |= set(table.children.get(self.adopter, ()))
        found = [entries[p] for p in table.with_descendants(seeds) if p != os.getpid()]
        self._known = {e.pid: e.start_time for e in found}
        return found

    def _own_pids(self) -> set[int] | None:
        """The tree's pids without a look at the whole table, where that is sound: the
        group of a sealed tree, or every descendant of this process when it is the tree's
        adopter (nothing it started can leave it: an orphan comes back to it). None
        otherwise, and where /proc lists no children."""
        if self.sealed:
            assert self.group is not None
            return self.group.pids()
        if self.adopter is not None and self.adopter == os.getpid():
            return descendants(self.adopter)
        return None

    def sample(self) -> tuple[int, int]:
        """Tasks (threads count, as they do for RLIMIT_NPROC and pids.max) and resident bytes."""
        alive = [e for e in self.members() if e.alive]
        return sum(e.threads for e in alive), sum(e.rss for e in alive)

    def terminate(self, grace: float) -> None:
        """SIGTERM the whole tree, wait up to ``grace`` seconds for it to end, then kill it."""
        for entry in self.members():
            _signal(entry, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._alive():
            time.sleep(0.02)
        self.kill()

    def kill(self) -> None:
        """Freeze every member, then SIGKILL them all; return once none is left running."""
        frozen: dict[int, int] = {}  # pid -> pidfd
        try:
            for _ in range(FREEZE_PASSES):
                running = [e for e in self._look() if e.alive and e.pid not in frozen]
                if not running:
                    break
                for entry in running:
                    fd = _open_pidfd(entry)
                    if fd is not None:
                        frozen[entry.pid] = fd
                        _send(fd, entry.pid, signal.SIGSTOP)
            for pid, fd in frozen.items():
                _send(fd, pid, signal.SIGKILL)
            _wait_gone([fd for fd in frozen.values() if fd >= 0], GONE_TIMEOUT)
        finally:
            for fd in frozen.values():
                if fd >= 0:
                    os.close(fd)
        deadline = time.monotonic() + GONE_TIMEOUT
        while self._alive() and time.monotonic() < deadline:
            for entry in self._look():
                _signal(entry, signal.SIGKILL)
            time.sleep(0.01)

    def _look(self) -> list[ProcessEntry]:
        """The members now: from the tree's own list where it has one, else the table's."""
        pids = self._own_pids()
        if pids is not None:
            return _entries(pids)
        return self.members(ProcessTable.read(with_uids=self.uid is not None))

    def _alive(self) -> bool:
        return any(e.alive for e in self._look())


def descendants(pid: int) -> set[int] | None:
    """Every process below ``pid``, from each thread's ``/proc/PID/task/TID/children``
    (a child belongs to the thread that forked it); None where the kernel has no such
    list. A process moving to a new parent meanwhile can be missed by one look: callers
    look again until a look finds nothing left running."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as handle:
                    children = [int(c) for c in handle.read().split()]
            except FileNotFoundError:
                if parent == pid and not os.path.exists(f"/proc/{parent}/task/{tid}/stat"):
                    continue  # the thread ended meanwhile
                if parent == pid:
                    return None  # no children lists on this kernel
                continue
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def working_below(folder: Path) -> list[ProcessEntry]:
    """Living processes whose current directory is ``folder`` or below it."""
    below = []
    root = str(folder)
    for entry in ProcessTable.read().entries.values():
        try:
            cwd = os.readlink(f"/proc/{entry.pid}/cwd")
        except OSError:
            continue
        if entry.alive and (cwd == root or cwd.startswith(root + "/")):
            below.append(entry)
    return below


def _entries(pids: Iterable[int]) -> list[ProcessEntry]:
    """The entries of ``pids`` that still exist, this process left out."""
    found = [e for e in map(read_stat, pids) if e is not None]
    return [e for e in found if e.pid != os.getpid()]


def _wait_gone(pidfds: list[int], timeout: float) -> None:
    """Wait until every process of ``pidfds`` has exited (a pidfd turns readable then),
    up to ``timeout`` seconds: woken by the exits, not by a sleep's tick."""
    deadline = time.monotonic() + timeout
    waiting = list(pidfds)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            ended, _, _ = select.select(waiting, [], [], left)
        except (OSError, ValueError):  # too many fds for select: the caller's loop waits
            return
        waiting = [fd for fd in waiting if fd not in ended]


def _same(entry: ProcessEntry | None, start_time: int) -> bool:
    return entry is not None and entry.start_time == start_time


def _open_pidfd(entry: ProcessEntry) -> int | None:
    """A pidfd of ``entry``'s process (-1 where pidfds do not exist), None when it is gone."""
    try:
        fd = os.pidfd_open(entry.pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return -1  # no pidfds: fall back to the pid (the start time was just checked)
    if not _same(read_stat(entry.pid), entry.start_time):
        os.close(fd)  # the pid now names another process
        return None
    return fd


def _send(fd: int, pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)


def _signal(entry: ProcessEntry, sig: int) -> None:
    fd = _open_pidfd(entry)
    if fd is None:
        return
    try:
        _send(fd, entry.pid, sig)
    finally:
        if fd >= 0:
            os.close(fd)
