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
) -> list[str]:
    """The bwrap command line that runs ``argv`` inside ``workdir``, ``hidden_dirs`` hidden."""
    cmd = [
        bwrap,
        "--die-with-parent",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
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
