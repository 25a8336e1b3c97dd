"""Run one command: its own process group, limits, sandbox, captured output, timeout and cancel.

Never through a shell. Whatever ends the run (exit, timeout, cancel, a limit), no
process of its tree is left alive when :func:`run_command` returns.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from simyard.engine.exitstatus import read_status, reporter_argv
from simyard.engine.hostuser import ModelUsers, UidLease, check_reachable_by_model, leased_uid
from simyard.engine.limits import (
    ControlGroup,
    Limits,
    adopting_process,
    apply_rlimits,
    die_with_parent,
    folder_size,
    launcher_argv,
    unique_group_name,
)
from simyard.engine.logcapture import LogCapture
from simyard.engine.proctree import ProcessTree
from simyard.engine.sandbox import bwrap_argv, image_bwrap_argv
from simyard.errors import EngineError

SAMPLE_INTERVAL = 0.1  # seconds between two looks at the process tree
DISK_SAMPLE_INTERVAL = 1.0


class StopReason(StrEnum):
    """Why simyard ended a process before it exited by itself."""

    timeout = "timeout"
    cancelled = "cancelled"
    memory = "memory"
    processes = "processes"
    disk = "disk"


@dataclass
class CommandOutcome:
    """How a command ended."""

    returncode: int | None
    signal: int | None
    stopped: StopReason | None
    oom_killed: bool
    process_limit_hit: bool
    duration: float
    peak_memory: int
    cpu_seconds: float | None = None  # user + system of every process of the tree reaped here


@dataclass
class CommandSpec:
    """Everything needed to start the command."""

    argv: list[str]
    workdir: Path
    env: dict[str, str]
    limits: Limits
    timeout: float | None
    kill_grace: float
    bwrap: str | None
    network: bool
    read_only_files: frozenset[Path] = frozenset()
    use_cgroups: bool = True
    hidden_dirs: tuple[Path, ...] = ()  # host folders the sandbox hides (the data folder)
    model_users: ModelUsers | None = None  # uids to lease when the engine is root
    model_folders: tuple[Path, ...] = ()  # besides the working directory, the model's own
    stdin: Path | None = None  # a file of the working directory fed to standard input
    tty: bool = False  # a pseudo-terminal for stdout/stderr, so C/Fortran runtimes line-buffer
    image_root: Path | None = None  # an unpacked image: its root filesystem is the task's /


def run_command(
    spec: CommandSpec,
    capture: LogCapture,
    *,
    cancel: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
) -> CommandOutcome:
    """Run ``spec`` to its end, feeding its output to ``capture``.

    When the engine is root the command runs as a uid leased for it alone (hostuser.py),
    which then owns the working directory; the lease ends after its last process died.
    """
    with leased_uid(spec.model_users) as lease:
        if lease is not None:
            lease.hand_over([spec.workdir, *spec.model_folders])
        return _run(spec, capture, lease, cancel or threading.Event(), on_start)


def _run(
    spec: CommandSpec,
    capture: LogCapture,
    lease: UidLease | None,
    cancel: threading.Event,
    on_start: Callable[[int], None] | None,
) -> CommandOutcome:
    group = None
    if spec.use_cgroups:
        group = ControlGroup.create(unique_group_name(spec.workdir.name), spec.limits)
    argv = spec.argv
    status_read: int | None = None
    status_write: int | None = None
    # An image task has its own argv (no host program in it): sandbox.image_bwrap_argv.
    host_bwrap = spec.bwrap if spec.image_root is None else None
    if spec.bwrap:  # bubblewrap says 128+N for a signal N: a reporter tells exits apart
        status_read, status_write = os.pipe()
        if host_bwrap:  # (in an image, image_bwrap_argv places the reporter)
            argv = [*reporter_argv(status_write), *argv]
    if lease is not None and spec.image_root is None:
        if not spec.bwrap:
            check_reachable_by_model(argv[0], spec.workdir)
        argv = [*lease.switch_argv(), *argv]
    if spec.image_root is not None:
        argv = image_bwrap_argv(
            spec.bwrap or "bwrap",  # (the engine refuses an image task without bubblewrap)
            argv,
            rootfs=spec.image_root,
            workdir=spec.workdir,
            network=spec.network,
            read_only_files=spec.read_only_files,
            switch=lease.switch_argv() if lease is not None else None,
            status_fd=status_write,
        )
    if host_bwrap:
        argv = bwrap_argv(
            host_bwrap,
            argv,
            workdir=spec.workdir,
            network=spec.network,
            read_only_files=spec.read_only_files,
            hidden_dirs=spec.hidden_dirs,
            host_user=lease is not None,
        )

    def in_child() -> None:
        if group is not None:
            group.join()
        die_with_parent()
        apply_rlimits(spec.limits, own_uid=lease is not None)

    # In a sandbox a launcher does in_child's work: with nothing to run between fork and
    # exec, the child is started by vfork.
    launcher = launcher_argv(group, spec.limits, own_uid=lease is not None) if spec.bwrap else None
    if launcher is not None:
        argv = [*launcher, *argv]

    started = time.monotonic()
    try:
        stdin = _open_stdin(spec.stdin, spec.workdir) if spec.stdin is not None else None
        output, into = _output_channel(tty=spec.tty)
    except OSError as exc:
        if group is not None:
            group.remove()
        for fd in (status_read, status_write):
            if fd is not None:
                os.close(fd)
        raise EngineError(f"cannot give the program its input: {exc}") from exc
    try:
        # stdout and stderr are one file (a pipe or a terminal): one stream, in the order
        # the program wrote it
        proc = subprocess.Popen(
            argv,
            cwd=spec.workdir,
            env=spec.env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=into,
            stderr=into,
            start_new_session=True,
            preexec_fn=in_child if launcher is None else None,
            close_fds=True,
            pass_fds=() if status_write is None else (status_write,),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(output)
        if group is not None:
            group.remove()
        if status_read is not None and status_write is not None:
            os.close(status_read)
            os.close(status_write)
        raise EngineError(f"cannot start {spec.argv[0]!r}: {exc}") from exc
    finally:
        os.close(into)
        if stdin is not None:
            os.close(stdin)
    if status_write is not None:
        os.close(status_write)
    if on_start is not None:
        on_start(proc.pid)
    reader = threading.Thread(target=_pump, args=(output, capture), daemon=True)
    reader.start()
    adopter = adopting_process()
    tree = ProcessTree(
        proc.pid, group, uid=lease.uid if lease is not None else None, adopter=adopter
    )
    stopped, peak = _watch(proc, tree, spec, cancel, started)
    # The main process is gone (or was stopped): nothing of its tree may outlive it. A run
    # over a limit gets no grace: a fork bomb or a memory eater would use it to grow.
    if stopped in (StopReason.timeout, StopReason.cancelled):
        tree.terminate(spec.kill_grace)
    else:
        tree.kill()
    returncode, cpu = _wait_with_usage(proc)
    if adopter is not None:
        reaped, cpu_adopted = _reap_adopted()
        cpu = None if cpu is None else cpu + cpu_adopted
        if reaped and lease is not None:
            lease.clean = True  # nothing of the run is left, not even a zombie
    reader.join(timeout=5)
    os.close(output)
    oom = group.oom_killed() if group is not None else False
    nproc_hit = group.hit_process_limit() if group is not None else False
    if group is not None:
        group.remove()
    sig = -returncode if returncode < 0 else None
    status = read_status(status_read) if status_read is not None else None
    if status is not None:
        sig = status.signal
        returncode = status.code if status.code is not None else returncode
        if status.cpu_seconds is not None:  # a sandbox's tree is reaped inside it
            cpu = max(cpu or 0.0, status.cpu_seconds)
    elif spec.bwrap and returncode > 128:  # no report (the reporter was killed): 128+N
        sig = returncode - 128
    return CommandOutcome(
        returncode=returncode,
        signal=sig,
        stopped=stopped,
        oom_killed=oom,
        process_limit_hit=nproc_hit,
        duration=time.monotonic() - started,
        peak_memory=peak,
        cpu_seconds=cpu,
    )


def _wait_with_usage(proc: subprocess.Popen[bytes]) -> tuple[int, float | None]:
    """Wait for ``proc`` as ``Popen.wait`` does; also the CPU seconds it and everything it
    reaped used (a sandbox reaps the whole tree inside it), None when it was reaped before
    (where pidfds do not exist, ExitWaiter's ``Popen.wait`` reaps it)."""
    if proc.returncode is not None:
        return proc.returncode, None
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _reap_adopted() -> tuple[bool, float]:
    """Reap the dead orphans this process adopted (a zombie still counts as a process of
    its user, RLIMIT_NPROC, until its parent waits for it): whether none is left, and the
    CPU seconds they used.

    Only for the adopter, which runs one attempt and has no other children: every process
    the attempt started is its descendant, so "no child at all" means none is left.
    """
    cpu = 0.0
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return True, cpu
        if pid == 0:
            return False, cpu  # a child still running: the tree was not all killed
        cpu += usage.ru_utime + usage.ru_stime


def _output_channel(*, tty: bool) -> tuple[int, int]:
    """(read end, write end) of what the program writes to: a pipe, or a pseudo-terminal.

    The terminal does no output processing (no ``\\n`` to ``\\r\\n``), so the log reads as
    from a pipe; its read end reports EIO, read as the end, once every writer is gone.
    """
    if not tty:
        return os.pipe()
    primary, secondary = os.openpty()
    mode = termios.tcgetattr(secondary)
    mode[1] &= ~termios.OPOST  # oflag
    mode[3] &= ~(termios.ECHO | termios.ICANON)  # lflag: nothing typed comes back
    termios.tcsetattr(secondary, termios.TCSANOW, mode)
    os.set_inheritable(primary, False)
    return primary, secondary


def _open_stdin(path: Path, workdir: Path) -> int:
    """The file ``path`` of the working directory, opened for the program's standard input.

    Not through a symlink that leaves the working directory, and only a regular file (a
    FIFO would hang the engine), so the model cannot read a host file through it.
    """
    root = workdir.resolve()
    real = path.resolve()
    if root not in real.parents:
        raise OSError(f"the stdin file {path.name!r} is not in the working directory")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        rel = path.relative_to(workdir).as_posix() if workdir in path.parents else path.name
        raise OSError(f"the stdin file {rel!r} is not in the working directory") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"the stdin file {path.name!r} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _pump(fd: int, capture: LogCapture) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: a terminal whose last writer is gone
            break
        if not chunk:
            break
        capture.feed(chunk)


class ExitWaiter:
    """``waiter(timeout)``: wait up to ``timeout`` seconds for ``proc`` to end; whether it has.

    A pidfd wakes the instant the process exits; ``Popen.wait(timeout)`` polls with a
    growing sleep (up to 50 ms late), so it is used only where pidfds do not exist.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        try:
            self.pidfd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def __call__(self, timeout: float) -> bool:
        if self.pidfd is not None:
            readable, _, _ = select.select([self.pidfd], [], [], timeout)
            return bool(readable)  # it exited; left unreaped, for its CPU usage
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _watch(
    proc: subprocess.Popen[bytes],
    tree: ProcessTree,
    spec: CommandSpec,
    cancel: threading.Event,
    started: float,
) -> tuple[StopReason | None, int]:
    """Wait for the process, stopping it on timeout, cancel or a broken limit."""
    exited = ExitWaiter(proc)
    try:
        return _watch_until_exit(proc, tree, spec, cancel, started, exited)
    finally:
        exited.close()


def _watch_until_exit(
    proc: subprocess.Popen[bytes],
    tree: ProcessTree,
    spec: CommandSpec,
    cancel: threading.Event,
    started: float,
    exited: ExitWaiter,
) -> tuple[StopReason | None, int]:
    peak = 0
    next_disk = started + DISK_SAMPLE_INTERVAL
    group = tree.group
    while True:
        # Wake the moment the process exits (not at the next tick): trivial runs stay fast.
        if exited(SAMPLE_INTERVAL):
            break
        if cancel.is_set():
            return StopReason.cancelled, peak
        now = time.monotonic()
        if spec.timeout is not None and now - started > spec.timeout:
            return StopReason.timeout, peak
        limits = spec.limits
        if limits.memory is not None or limits.processes is not None:
            tasks, memory = tree.sample()
            peak = max(peak, memory)
            if limits.processes is not None and tasks > limits.processes:
                return StopReason.processes, peak
            if group is not None and group.hit_process_limit():
                return StopReason.processes, peak
            memory_enforced = group is not None and group.enforces_memory
            if limits.memory is not None and memory > limits.memory and not memory_enforced:
                return StopReason.memory, peak
        if limits.disk is not None and now >= next_disk:
            next_disk = now + DISK_SAMPLE_INTERVAL
            if folder_size(spec.workdir, stop_above=limits.disk) > limits.disk:
                return StopReason.disk, peak
    return None, peak


def signal_name(sig: int) -> str:
    """``SIGKILL`` for 9."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
