"""Run the model under bubblewrap: its own view of the filesystem, no network unless allowed.

Inside the sandbox the model sees the system's programs and libraries read-only, the
Python installation simyard runs on (so ``python3`` models work), a private ``/tmp``,
and its working directory (read-write) at the same absolute path as outside. Nothing
else of the host: no home folders, no other runs, no secrets in ``/etc``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Files of /etc that hold secrets; they are replaced by empty ones inside the sandbox.
MASKED_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
MASKED_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/simyard")
SANDBOX_UID = 1000


def find_bwrap() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return shutil.which("bwrap")


def python_dirs() -> list[str]:
    """Folders holding the running Python (interpreter, standard library, packages)."""
    dirs = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)}
    return sorted(d for d in dirs if not any(d.startswith(s + "/") for s in SYSTEM_DIRS))


def bwrap_argv(
    bwrap: str,
    argv: list[str],
    *,
    workdir: Path,
    network: bool,
    read_only_files: Iterable[Path] = (),
) -> list[str]:
    """The bwrap command line that runs ``argv`` inside ``workdir``."""
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
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--bind", str(workdir), str(workdir)]
    for file in sorted(read_only_files):
        cmd += ["--ro-bind", str(file), str(file)]
    cmd += ["--chdir", str(workdir), "--", *argv]
    return cmd
