"""The unprivileged host user a model runs as when the engine runs as root.

Root is above every per-user limit: RLIMIT_NPROC does not bind it, so a fork bomb run as
root fills the host's process table. When the engine is root, each task attempt
therefore leases a uid of its own from a range no real user has (by default
2,000,000,000 upwards; the gid is the same number): the kernel then counts the run's
processes, and only the run's, against its process limit, and every process of the run
is known by its uid. Two attempts on one host never share a uid: a lease is an exclusive
``flock`` on a lock file per uid in a root-only folder (``/run/simyard/model-uids``),
held until the attempt's last process is dead. The lock dies with its holder, so a
crashed engine frees its uid; whoever leases it next kills what the crash left behind.

The model is switched to its uid by ``setpriv`` (util-linux), as the last step before
the model's own program: inside the sandbox (bubblewrap then runs privileged, without a
user namespace) and without one. When the engine is not root, nothing here is used and
the model runs as the engine's user.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from simyard.errors import EngineError

DEFAULT_FIRST_UID = 2_000_000_000
DEFAULT_UID_COUNT = 65_536
DEFAULT_LOCK_DIR = Path("/run/simyard/model-uids")
UNCLEAN_PASSED = 16  # uids with unreaped processes passed over before one is taken anyway
_CLEAN = b"clean\n"  # a lock file's text when its last holder saw nothing of the uid left


@dataclass(frozen=True)
class ModelUsers:
    """The uids (gid = uid) task attempts may lease, and where their leases are kept."""

    first: int = DEFAULT_FIRST_UID
    count: int = DEFAULT_UID_COUNT
    lock_dir: Path = DEFAULT_LOCK_DIR

    def __post_init__(self) -> None:
        if self.first < 1 or self.count < 1 or self.first + self.count > 2**32 - 1:
            raise EngineError(f"model uids {self.first}+{self.count} are not a range of uids")


def engine_is_root() -> bool:
    """Whether model processes must be moved to a uid of their own (the engine runs as root)."""
    return os.geteuid() == 0


class UidLease:
    """One uid held for one task attempt; ``release`` (or leaving ``with``) frees it."""

    def __init__(self, uid: int, lock_fd: int) -> None:
        self.uid = uid
        self.gid = uid
        self._lock_fd: int | None = lock_fd
        # Set by the holder that has seen every process of the attempt gone, zombies
        # included: the lock file then says so, and the next lease skips the look for
        # leftovers (a whole pass over the process table).
        self.clean = False

    @classmethod
    def acquire(cls, users: ModelUsers) -> UidLease:
        """Lease a free uid of ``users``; EngineError when all of them are in use."""
        _make_lock_dir(users.lock_dir)
        # Lowest free uid first: the lock files stay as few as attempts ever ran at once.
        # A uid whose killed processes are not reaped yet is taken only when no clean one
        # is found among the next few (their parent may reap them any moment, or never).
        unclean: UidLease | None = None
        passed = 0
        for uid in range(users.first, users.first + users.count):
            lease = cls._try(users, uid)
            if lease is None:
                continue
            if lease._left_clean() or _kill_leftovers(uid):
                if unclean is not None:
                    unclean.release()
                return lease
            if unclean is None:
                unclean = lease
            else:
                lease.release()
            passed += 1
            if passed > UNCLEAN_PASSED:
                break
        if unclean is not None:
            return unclean
        raise EngineError(
            f"all {users.count} model uids from {users.first} are in use; "
            "raise SIMYARD_MODEL_UID_COUNT"
        )

    @classmethod
    def _try(cls, users: ModelUsers, uid: int) -> UidLease | None:
        """The lease of ``uid``, or None when a live engine holds it."""
        fd = os.open(users.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # flock, not fcntl's POSIX locks: those are per process, and the engine runs
            # several attempts in threads of one process (``simyard models test``).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(uid, fd)

    def _left_clean(self) -> bool:
        """Whether the last holder left the uid with no process; the mark is taken away at
        once, so a holder that dies before its release leaves the uid to be looked at."""
        assert self._lock_fd is not None
        mark = os.pread(self._lock_fd, len(_CLEAN), 0)
        if mark:
            os.ftruncate(self._lock_fd, 0)
        return mark == _CLEAN

    def release(self) -> None:
        """Free the uid (the caller has killed every process of it)."""
        if self._lock_fd is not None:
            if self.clean:
                os.pwrite(self._lock_fd, _CLEAN, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> UidLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def switch_argv(self) -> list[str]:
        """The command prefix that runs the rest of the command line as this uid, with no
        supplementary groups, no capabilities, and death when its parent dies."""
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
        if setpriv is None:
            raise EngineError("setpriv (util-linux) is needed to run models as their own user")
        return [
            setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--pdeathsig=KILL",  # set after the uid switch, which would clear it
            "--",
        ]

    def hand_over(self, folders: Iterable[Path]) -> None:
        """Make ``folders`` and all below them the model's own, so that it may edit any file.

        A file with more than one link is left alone: staging hardlinks large files that
        stay read-only (their inode is shared with a cache), and a link the model made to a
        file elsewhere must not make that file its own. Symlinks are never followed.
        """
        for folder in folders:
            os.chown(folder, self.uid, self.gid, follow_symlinks=False)
            for _, dirs, files, dir_fd in os.fwalk(folder, follow_symlinks=False):
                for name in (*dirs, *files):
                    with contextlib.suppress(FileNotFoundError):
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                            continue
                        os.chown(name, self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False)


def check_reachable_by_model(program: str, workdir: Path) -> None:
    """EngineError unless a user of no group may reach ``program`` and ``workdir``.

    Without a sandbox the model's uid sees the host as any user does: it owns nothing
    outside its working directory, so every folder above the program and above the
    working directory must be open to all users (a Python in root's home is not, nor a
    data folder kept private), else the model fails with a bare EACCES.
    """
    program_path = Path(program).resolve()
    needed = [*reversed(program_path.parents), program_path, *reversed(workdir.resolve().parents)]
    for part in needed:
        with contextlib.suppress(OSError):
            if not part.stat().st_mode & stat.S_IXOTH:
                raise EngineError(
                    f"cannot run {program!r} unsandboxed as the model's own user: it may "
                    f"not reach {part} (not open to all users); run models in the sandbox, "
                    "or open that folder to all users"
                )


def _make_lock_dir(lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = lock_dir.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise EngineError(f"{lock_dir} must be a folder that only root may write")


def _kill_leftovers(uid: int) -> bool:
    """Kill processes of ``uid`` that a crashed engine left (none in the usual case); True
    when the uid then has no process at all.

    A killed process whose parent has not reaped it yet (an orphan waits for init) still
    counts against the uid's RLIMIT_NPROC: a model started as that uid could then not even
    start its own program, so such a uid is passed over until its dead are reaped.
    """
    from simyard.engine.proctree import ProcessTable, ProcessTree

    def has_processes() -> bool:
        table = ProcessTable.read(with_uids=True)
        return any(entry.uid == uid for entry in table.entries.values())

    if not has_processes():
        return True  # the usual case: one look at the process table
    ProcessTree(None, None, uid=uid).kill()
    return not has_processes()


def kill_unleased_processes(users: ModelUsers) -> None:
    """Kill every process that runs as one of ``users`` while no engine leases its uid.

    Those are a dead engine's leftovers (a server killed with -9): a live engine holds
    the lease of its uid until the attempt's last process is dead. Each uid is leased
    while its processes are killed, so no new attempt can start as it meanwhile.
    """
    if not engine_is_root():
        return
    from simyard.engine.proctree import ProcessTable

    table = ProcessTable.read(with_uids=True)
    last = users.first + users.count
    uids = {e.uid for e in table.entries.values() if e.uid is not None and e.alive}
    candidates = sorted(uid for uid in uids if users.first <= uid < last)
    if not candidates:
        return
    _make_lock_dir(users.lock_dir)
    for uid in candidates:
        lease = UidLease._try(users, uid)
        if lease is not None:
            with lease:
                _kill_leftovers(uid)


@contextlib.contextmanager
def leased_uid(users: ModelUsers | None) -> Iterator[UidLease | None]:
    """A uid for one attempt when ``users`` is set and the engine is root, else None."""
    if users is None or not engine_is_root():
        yield None
        return
    with UidLease.acquire(users) as lease:
        yield lease
