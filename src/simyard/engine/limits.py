"""Resource limits and the model's process tree: keep it bounded, see all of it, kill all of it.

Three layers, each used where the platform allows:

1. A control group per task run (cgroup v2, or the v1 ``memory`` and ``pids``
   hierarchies): the kernel enforces memory and process limits for the whole tree
   and lists every process in it, even ones that left the process group.
2. ``setrlimit`` in the child: file size, core dumps, and (when not root) processes.
3. A watchdog that samples the tree with psutil: memory, process count, disk use of
   the working directory. It is the only enforcement when there are no cgroups.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PR_SET_PDEATHSIG = 1


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


def apply_rlimits(limits: Limits) -> None:
    """Set the per-process limits; called in the child between fork and exec."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.file_size is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    if limits.memory is not None:
        # A backstop only: address space is not memory, so leave generous room above it.
        cap = max(limits.memory * 4, limits.memory + 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if limits.processes is not None and os.geteuid() != 0:
        # RLIMIT_NPROC counts all processes of the user and is ignored for root.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


class ControlGroup:
    """A cgroup holding one task run's processes; ``create`` returns None where none can be made."""

    def __init__(self, paths: dict[str, Path], version: int) -> None:
        self.paths = paths  # controller ("memory", "pids", or "" for v2) -> folder
        self.version = version

    @classmethod
    def create(cls, name: str, limits: Limits) -> ControlGroup | None:
        """A new cgroup named ``name`` under this process's own, with ``limits`` applied."""
        try:
            group = cls._create_v2(name) or cls._create_v1(name)
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
    def _create_v1(cls, name: str) -> ControlGroup | None:
        paths = {}
        for controller in ("memory", "pids"):
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


class ProcessTree:
    """Every process a task run started: tracked so that all of them can be measured and killed.

    A process is in the tree if it descends from the root, shares the root's session,
    sits in the task's cgroup, or was seen in the tree before (a daemonising child).
    """

    def __init__(self, root_pid: int, group: ControlGroup | None) -> None:
        self.root_pid = root_pid
        self.group = group
        self._known: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            self._known[root_pid] = psutil.Process(root_pid)

    def members(self) -> list[psutil.Process]:
        """The live processes of the tree now (refreshing what is known)."""
        found: dict[int, psutil.Process] = {}
        for pid, proc in list(self._known.items()):
            if proc.is_running():
                found[pid] = proc
                with contextlib.suppress(psutil.Error):
                    for child in proc.children(recursive=True):
                        found.setdefault(child.pid, child)
        if self.group is not None:
            for pid in self.group.pids():
                if pid not in found:
                    with contextlib.suppress(psutil.Error):
                        found[pid] = psutil.Process(pid)
        self._known = found
        return list(found.values())

    def memory(self) -> int:
        """Resident memory of the whole tree, in bytes."""
        total = 0
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to the process group and to every tracked process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.root_pid, sig)
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def kill(self, grace: float) -> None:
        """SIGTERM the whole tree, wait up to ``grace`` seconds, then SIGKILL what is left."""
        self.members()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._alive():
            time.sleep(0.02)
        for _ in range(100):
            if not self._alive():
                break
            self.signal_all(signal.SIGKILL)
            time.sleep(0.02)

    def _alive(self) -> bool:
        alive = [p for p in self.members() if p.pid != self.root_pid or _not_zombie(p)]
        return any(_not_zombie(p) for p in alive)


def _not_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
