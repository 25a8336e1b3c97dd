"""Resource limits and the model's process tree: keep it bounded, see all of it, kill all of it.

Three layers, each used where the platform allows:

1. A control group per task run (cgroup v2, or the v1 ``memory`` and ``pids``
   hierarchies): the kernel enforces memory and process limits for the whole tree
   and lists every process in it, even ones that left the process group.
2. ``setrlimit`` in the child (or ``prlimit`` before the sandbox): file size, core dumps,
   and (when not root) processes.
3. A watchdog that samples the tree (proctree.py): memory, process count, disk use of
   the working directory. It is the only enforcement of memory when there are no cgroups.

Processes are bounded even without cgroups: RLIMIT_NPROC counts every process of a
user, so it binds each run on its own only when the run has a uid of its own (the
engine runs as root, see hostuser.py); root itself it does not bind at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_adopter: int | None = None  # this process, once it adopts its models' orphans


@dataclass(frozen=True)
class Limits:
    """The limits of one task run; None means unlimited."""

    memory: int | None = None
    processes: int | None = None
    disk: int | None = None
    file_size: int | None = None


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (a lost worker or server)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def adopt_orphans() -> None:
    """Make this process the reaper of every orphan below it (``PR_SET_CHILD_SUBREAPER``).

    For a process that runs one task attempt at a time (the local executor's child): a
    daemon that double-forks and leaves its session is then still this process's
    descendant, so the attempt's process tree includes it and kills it with the rest.
    """
    global _adopter
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
        _adopter = os.getpid()


def adopting_process() -> int | None:
    """This process's pid when it adopts orphans and runs one attempt only, else None."""
    return _adopter if _adopter == os.getpid() else None


def apply_rlimits(limits: Limits, *, own_uid: bool = False) -> None:
    """Set the per-process limits; called in the child between fork and exec.

    ``own_uid``: the model will run as a uid leased for this run alone (the child is still
    root here), so RLIMIT_NPROC counts exactly the run's processes.
    """
    for which, value in rlimits(limits, own_uid=own_uid):
        resource.setrlimit(which, (value, value))


def rlimits(limits: Limits, *, own_uid: bool = False) -> list[tuple[int, int]]:
    """The per-process limits a task's processes get, soft and hard alike."""
    found = [(resource.RLIMIT_CORE, 0)]
    if limits.file_size is not None:
        found.append((resource.RLIMIT_FSIZE, limits.file_size))
    if limits.memory is not None:
        # A backstop only: address space is not memory, so leave generous room above it.
        found.append((resource.RLIMIT_AS, max(limits.memory * 4, limits.memory + 2**30)))
    if limits.processes is not None and (own_uid or os.geteuid() != 0):
        # One above the limit: the watchdog stops a run that has more than its limit, and a
        # run kept exactly at its limit by the kernel would never show it.
        found.append((resource.RLIMIT_NPROC, limits.processes + 1))
    return found


_PRLIMIT_OPTIONS = {
    resource.RLIMIT_CORE: "--core",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_NPROC: "--nproc",
}
# Joins the control groups named before "--" (writing 0 moves the writer), then runs the rest.
_JOIN = 'for f; do [ "$f" = -- ] && break; echo 0 > "$f" || exit 126; shift; done; shift; exec "$@"'


@functools.cache
def _launch_tools() -> tuple[str, str] | None:
    prlimit = shutil.which("prlimit")
    sh = shutil.which("sh", path="/bin:/usr/bin")
    return (sh, prlimit) if sh and prlimit else None


def launcher_argv(
    group: ControlGroup | None, limits: Limits, *, own_uid: bool = False
) -> list[str] | None:
    """A command prefix for a sandbox's command line that does what the child does between
    fork and exec without it (``group.join``, :func:`apply_rlimits`), or None without
    ``sh`` and util-linux's ``prlimit``.

    With it, nothing runs in the child before exec, so Python starts the child with
    vfork: a fork of the worker (copying its page tables) cost 9 ms of CPU per start on
    a 2-core VM, the programs about 1 ms each. The parent-death signal is bubblewrap's
    (``--die-with-parent``, the first thing it does): a ``setpriv --pdeathsig`` in front
    of it cost another 1 ms of CPU per start and closed only the time prlimit takes.
    """
    tools = _launch_tools()
    if tools is None:
        return None
    sh, prlimit = tools
    argv: list[str] = []
    if group is not None:
        procs = [str(path / "cgroup.procs") for path in group.paths.values()]
        argv += [sh, "-c", _JOIN, "simyard-launch", *procs, "--"]
    argv.append(prlimit)
    for which, value in rlimits(limits, own_uid=own_uid):
        argv.append(f"{_PRLIMIT_OPTIONS[which]}={value}:{value}")
    return [*argv, "--"]


class ControlGroup:
    """A cgroup holding one task run's processes; ``create`` returns None where none can be made."""

    def __init__(self, paths: dict[str, Path], version: int) -> None:
        self.paths = paths  # controller ("memory", "pids", or "" for v2) -> folder
        self.version = version

    @classmethod
    def create(cls, name: str, limits: Limits) -> ControlGroup | None:
        """A new cgroup named ``name`` under this process's own, with ``limits`` applied."""
        # v1: the memory controller only for a memory limit (a folder of it costs ~10x a
        # pids one); the pids controller always: it holds the tree (proctree.py, sealed).
        wanted = ("memory", "pids") if limits.memory is not None else ("pids",)
        try:
            group = cls._create_v2(name) or cls._create_v1(name, wanted)
        except OSError:
            return None
        if group is None:
            return None
        try:
            group._apply(limits)
        except OSError:
            group.remove()
            return None
        return group

    @classmethod
    def _own_path(cls, controller: str) -> str | None:
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                if controller in controllers.split(","):
                    return path
        return None

    @classmethod
    def _create_v2(cls, name: str) -> ControlGroup | None:
        if not (CGROUP_ROOT / "cgroup.controllers").is_file():
            return None
        own = cls._own_path("")
        if own is None:
            return None
        parent = CGROUP_ROOT / own.lstrip("/")
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "memory" not in enabled or "pids" not in enabled:
            return None
        path = parent / name
        path.mkdir()
        return cls({"": path}, 2)

    @classmethod
    def _create_v1(cls, name: str, wanted: tuple[str, ...]) -> ControlGroup | None:
        paths = {}
        for controller in wanted:
            base = CGROUP_ROOT / controller
            own = cls._own_path(controller)
            if own is None or not (base / "cgroup.procs").exists():
                continue
            path = base / own.lstrip("/") / name
            path.mkdir()
            paths[controller] = path
        return cls(paths, 1) if paths else None

    def _apply(self, limits: Limits) -> None:
        if self.version == 2:
            path = self.paths[""]
            if limits.memory is not None:
                (path / "memory.max").write_text(str(limits.memory))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            if limits.processes is not None:
                (path / "pids.max").write_text(str(limits.processes))
            return
        if limits.memory is not None and "memory" in self.paths:
            (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(limits.memory))
        if limits.processes is not None and "pids" in self.paths:
            (self.paths["pids"] / "pids.max").write_text(str(limits.processes))

    @property
    def enforces_memory(self) -> bool:
        return "memory" in self.paths or self.version == 2

    @property
    def enforces_processes(self) -> bool:
        return "pids" in self.paths or self.version == 2

    def join(self) -> None:
        """Move the calling process in (used in the child before exec)."""
        for path in self.paths.values():
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        """Every process in the group."""
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return found

    def _counter(self, filename: str, key: str, controller: str) -> int:
        path = self.paths.get("" if self.version == 2 else controller)
        if path is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in (path / filename).read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for exceeding its memory."""
        if self.version == 2:
            return self._counter("memory.events", "oom_kill", "") > 0
        return self._counter("memory.oom_control", "oom_kill", "memory") > 0

    def hit_process_limit(self) -> bool:
        """Whether a fork was refused because the process limit was reached."""
        return self._counter("pids.events", "max", "pids") > 0

    def remove(self) -> None:
        """Kill what is left and remove the group's folders."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                path.rmdir()


def unique_group_name(prefix: str) -> str:
    """A cgroup name no other task run uses."""
    return f"simyard-{prefix}-{uuid.uuid4().hex[:12]}"


def folder_size(path: Path, stop_above: int | None = None) -> int:
    """Bytes used by the files below ``path`` (stops counting once over ``stop_above``)."""
    total = 0
    stack = [path]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                if stop_above is not None and total > stop_above:
                    return total
    return total
