"""Run the model under bubblewrap: its own view of the filesystem, no network unless allowed.

Inside the sandbox the model sees the system's programs and libraries read-only, the
Python installation simyard runs on (so ``python3`` models work), a private ``/tmp``,
and its working directory (read-write) at the same absolute path as outside. Nothing
else of the host: no home folders, no other runs, no secrets in ``/etc``.

The data folder (database, secret key, storage, live logs, caches, other runs) may lie
under a folder the sandbox shows (``SIMYARD_HOME=/opt/simyard``, or inside the Python
prefix): every folder in ``hidden_dirs`` gets an empty read-only tmpfs over it, mounted
before the working directory (bwrap mounts in order), so the run's own folder shows
through and nothing else of it. A folder that cannot be hidden that way (``/``, a
system folder, or one holding the Python installation) is refused: see
:func:`hiding_problem`, which ``simyard serve`` asks at start-up.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from simyard.errors import EngineError

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Files of /etc that hold secrets; they are replaced by empty ones inside the sandbox.
MASKED_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
MASKED_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/simyard")
SANDBOX_UID = 1000
PRIVATE_TMP = Path("/tmp")  # the sandbox's own tmpfs, over the host's /tmp


def find_bwrap() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return shutil.which("bwrap")


def python_dirs() -> list[str]:
    """Folders holding the running Python (interpreter, standard library, packages)."""
    dirs = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)}
    return sorted(d for d in dirs if not any(d.startswith(s + "/") for s in SYSTEM_DIRS))


_PYTHON_PATHS_NEEDED = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")


def needed_dirs() -> list[Path]:
    """Host folders (resolved) every sandboxed model needs: system folders and Python's own."""
    python = [sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)]
    python += [p for n, p in sysconfig.get_paths().items() if n in _PYTHON_PATHS_NEEDED]
    found = {Path(d).resolve() for d in (*SYSTEM_DIRS, *python) if Path(d).is_dir()}
    return sorted(found)


def hiding_problem(folder: Path) -> str | None:
    """Why the sandbox cannot hide ``folder`` from the model, or None when it can."""
    real = folder.resolve()
    if real == Path("/"):
        return "it is the root folder, which holds every system folder a model needs"
    for needed in needed_dirs():
        if needed == real or real in needed.parents:
            return f"hiding it would hide {needed}, which every sandboxed model needs"
    return None


def bwrap_argv(
    bwrap: str,
    argv: list[str],
    *,
    workdir: Path,
    network: bool,
    read_only_files: Iterable[Path] = (),
    hidden_dirs: Iterable[Path] = (),
    host_user: bool = False,
) -> list[str]:
    """The bwrap command line that runs ``argv`` inside ``workdir``, ``hidden_dirs`` hidden.

    ``host_user``: the engine is root and ``argv`` switches to the run's own host uid
    (hostuser.py); see :func:`user_args`.
    """
    cmd = [
        bwrap,
        "--die-with-parent",
        *user_args(host_user),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "simyard",
    ]
    if not network:
        cmd.append("--unshare-net")
    # /tmp first: the binds below may lie under /tmp (a venv, a test's working directory).
    cmd += ["--tmpfs", "/tmp"]
    for path in SYSTEM_DIRS:
        if Path(path).is_symlink():
            cmd += ["--symlink", str(Path(path).readlink()), path]
        elif Path(path).is_dir():
            cmd += ["--ro-bind", path, path]
    for path in python_dirs():
        cmd += ["--ro-bind", path, path]
    for path in MASKED_FILES:
        if Path(path).exists():
            cmd += ["--ro-bind", "/dev/null", path]
    for path in MASKED_DIRS:
        if Path(path).is_dir():
            cmd += ["--tmpfs", path]
    hidden = _existing_hidden_dirs(hidden_dirs)
    for path in hidden:  # before the working directory's bind, which may lie inside one
        cmd += ["--tmpfs", path]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--bind", str(workdir), str(workdir)]
    for file in sorted(read_only_files):
        cmd += ["--ro-bind", str(file), str(file)]
    if host_user:
        cmd += open_to_all(cmd)
    for path in hidden:  # read-only once the binds inside are made: nothing to fill
        cmd += ["--remount-ro", path]
    cmd += ["--chdir", str(workdir), "--", *argv]
    return cmd


def _existing_hidden_dirs(hidden_dirs: Iterable[Path]) -> list[str]:
    """The folders to cover (resolved, outermost first); raises when one cannot be hidden."""
    found = []
    for folder in hidden_dirs:
        problem = hiding_problem(folder)
        if problem is not None:
            raise EngineError(f"the sandbox cannot hide {folder}: {problem}")
        real = folder.resolve()
        if real.is_dir() and real != PRIVATE_TMP and PRIVATE_TMP not in real.parents:
            found.append(real)  # (under /tmp it is hidden already by the sandbox's own /tmp)
    outermost = [f for f in set(found) if not any(o in f.parents for o in found)]
    return [str(f) for f in sorted(outermost)]


def user_args(host_user: bool) -> list[str]:
    """Who the model is inside the sandbox.

    Run by an ordinary user, bubblewrap maps that user to uid 1000 of a user namespace of
    its own. Run by root with ``host_user``, it sets up the sandbox with root's rights (so
    it reaches a Python or a working directory below a folder closed to others) and no
    user namespace; the command then switches to the run's own host uid with setpriv,
    which keeps the two capabilities that takes for itself and drops them in the switch.
    """
    if host_user:
        return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]


_BINDS = ("--bind", "--ro-bind", "--bind-try", "--ro-bind-try", "--dev-bind", "--dev-bind-try")


def open_to_all(cmd: list[str]) -> list[str]:
    """``--chmod`` options opening the sandbox's own folders to the model's host uid.

    bubblewrap makes the folders above a bind with the modes of the host's (``/root``
    stays 0700), and its tmpfs ``/tmp`` is root's alone; those folders exist only in the
    sandbox, so opening them shows nothing of the host. A folder inside a bind is the
    host's own and is left as it is.
    """
    mounts: dict[Path, bool] = {}  # mount point -> whether it is a bind of a host folder
    binds: list[Path] = []
    i = 0
    while i < len(cmd) and cmd[i] != "--":
        if cmd[i] in _BINDS and i + 2 < len(cmd):
            mounts[Path(cmd[i + 2])] = True
            binds.append(Path(cmd[i + 2]))
            i += 3
            continue
        if cmd[i] == "--tmpfs" and i + 1 < len(cmd):
            mounts[Path(cmd[i + 1])] = False
        i += 1

    def inside_a_bind(folder: Path) -> bool:
        holders = [m for m in mounts if m == folder or m in folder.parents]
        return bool(holders) and mounts[max(holders, key=lambda m: len(m.parts))]

    folders = {p for b in binds for p in b.parents if p != Path("/")}
    opened = [f for f in sorted(folders) if not inside_a_bind(f)]
    args = ["--chmod", "1777", str(PRIVATE_TMP)] if mounts.get(PRIVATE_TMP) is False else []
    for folder in opened:
        if folder != PRIVATE_TMP:
            args += ["--chmod", "0755", str(folder)]
    return args
