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

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from simyard.engine.exitstatus import _PERL as _PERL_REPORTER
from simyard.errors import EngineError

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Files of /etc that hold secrets; they are replaced by empty ones inside the sandbox.
MASKED_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
MASKED_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/simyard")
SANDBOX_UID = 1000
PRIVATE_TMP = Path("/tmp")  # the sandbox's own tmpfs, over the host's /tmp


def find_bwrap() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return _which("bwrap", os.environ.get("PATH"))


@functools.lru_cache(maxsize=8)
def _which(program: str, path: str | None) -> str | None:
    # Asked twice per sandboxed start: a walk along PATH each time, for the same answer.
    return shutil.which(program, path=path)


def python_dirs() -> list[str]:
    """Folders holding the running Python (interpreter, standard library, packages)."""
    dirs = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)}
    return sorted(d for d in dirs if not any(d.startswith(s + "/") for s in SYSTEM_DIRS))


_PYTHON_PATHS_NEEDED = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")


@functools.cache
def needed_dirs() -> list[Path]:
    """Host folders (resolved) every sandboxed model needs: system folders and Python's own.

    Asked once per process: the Python installation does not move while it runs, and each
    sandboxed start asks (resolving them took 3 ms of a 2-core machine's CPU per start)."""
    python = [sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)]
    python += [p for n, p in sysconfig.get_paths().items() if n in _PYTHON_PATHS_NEEDED]
    found = {Path(d).resolve() for d in (*SYSTEM_DIRS, *python) if Path(d).is_dir()}
    return sorted(found)


@functools.cache
def _needed_strings() -> tuple[str, ...]:
    return tuple(str(d) for d in needed_dirs())


def hiding_problem(folder: Path) -> str | None:
    """Why the sandbox cannot hide ``folder`` from the model, or None when it can."""
    return _problem_of_resolved(folder.resolve())


def _problem_of_resolved(real: Path) -> str | None:
    # Compared as strings: walking each needed folder's parents as Paths was most of
    # bwrap_argv's CPU, which asks for every hidden folder at every start (with four
    # hidden folders and the PATH lookups above: 0.93-1.03 -> 0.27-0.28 ms per start).
    if real == Path("/"):
        return "it is the root folder, which holds every system folder a model needs"
    below = str(real) + "/"
    for needed in _needed_strings():
        if needed == str(real) or needed.startswith(below):
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
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    for path in python_dirs():
        cmd += ["--ro-bind", path, path]
    # Looked for at every start (not once): a secret folder made later is masked too.
    for path in MASKED_FILES:
        if os.path.exists(path):
            cmd += ["--ro-bind", "/dev/null", path]
    for path in MASKED_DIRS:
        if os.path.isdir(path):
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
        real = folder.resolve()
        problem = _problem_of_resolved(real)
        if problem is not None:
            raise EngineError(f"the sandbox cannot hide {folder}: {problem}")
        # (under /tmp it is hidden already by the sandbox's own /tmp)
        if real.is_dir() and not f"{real}/".startswith(f"{PRIVATE_TMP}/"):
            found.append(str(real))
    outermost = {f for f in found if not any(f.startswith(f"{o}/") for o in found)}
    return sorted(outermost, key=Path)


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
    mounts: dict[str, bool] = {}  # mount point -> whether it is a bind of a host folder
    binds: list[str] = []
    i = 0
    while i < len(cmd) and cmd[i] != "--":
        if cmd[i] in _BINDS and i + 2 < len(cmd):
            mounts[os.path.normpath(cmd[i + 2])] = True
            binds.append(os.path.normpath(cmd[i + 2]))
            i += 3
            continue
        if cmd[i] == "--tmpfs" and i + 1 < len(cmd):
            mounts[os.path.normpath(cmd[i + 1])] = False
        i += 1

    def inside_a_bind(folder: str) -> bool:
        """Whether the innermost mount holding ``folder`` (itself included) is a bind."""
        while True:
            if folder in mounts:
                return mounts[folder]
            if folder == "/":
                return False
            folder = os.path.dirname(folder)

    folders = {p for b in binds for p in _parents(b)}
    opened = [f for f in sorted(folders, key=_parts) if not inside_a_bind(f)]
    tmp = str(PRIVATE_TMP)
    args = ["--chmod", "1777", tmp] if mounts.get(tmp) is False else []
    for folder in opened:
        if folder != tmp:
            args += ["--chmod", "0755", folder]
    return args


def _parents(path: str) -> list[str]:
    """The folders above the absolute ``path``, ``/`` left out: /a/b/c -> /a/b, /a."""
    found = []
    path = os.path.dirname(path)
    while path != "/":
        found.append(path)
        path = os.path.dirname(path)
    return found


def _parts(path: str) -> list[str]:
    """A sort key ordering paths as :class:`~pathlib.Path` does (by their parts)."""
    return path.split("/")


# --------------------------------------------------------------------------- image as root

IMAGE_HELPERS = Path("/.simyard")  # host helpers bound into an image sandbox (root engine)
# The exit-status reporter loads no module, so the host's Perl runs it in any image.
IMAGE_REPORTER = _PERL_REPORTER
_IMAGE_MOUNTS = (PRIVATE_TMP, Path("/proc"), Path("/dev"), IMAGE_HELPERS)


def image_bwrap_argv(
    bwrap: str,
    argv: list[str],
    *,
    rootfs: Path,
    workdir: Path,
    network: bool,
    read_only_files: Iterable[Path] = (),
    switch: list[str] | None = None,
    status_fd: int | None = None,
) -> list[str]:
    """The bwrap command line running ``argv`` with the image ``rootfs`` as ``/``, read-only.

    Nothing of the host is shown but the working directory (read-write, at its own path),
    the read-only files staged in it, a private ``/tmp``, ``/proc`` and ``/dev``. The
    image's top-level entries are bound one by one onto bubblewrap's own root, and the
    folders on the way to the working directory that the image has are rebuilt the same
    way one level deeper, so the working directory's mount point can be made without
    writing into the image; the root is then made read-only.

    ``switch``: the engine is root and the command must switch to the run's host uid
    (hostuser.py). The host's ``setpriv`` cannot be found in an image, so it is bound in
    under ``/.simyard`` with its libraries and run by the host's own dynamic loader.

    ``status_fd``: the write end of the exit-status pipe (engine/exitstatus.py). The
    host's Perl runs the reporter the same way (it loads no module); without a Perl on
    the host the engine reads bubblewrap's 128+N as before.
    """
    cmd = [
        bwrap,
        "--die-with-parent",
        *user_args(switch is not None),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "simyard",
    ]
    if not network:
        cmd.append("--unshare-net")
    chain = [*reversed(workdir.parents), workdir]  # /, /a, /a/b, ..., the working directory
    spliced = [Path("/")]
    for folder in chain[1:-1]:
        source = rootfs / folder.relative_to("/")
        if folder in _IMAGE_MOUNTS or source.is_symlink() or not source.is_dir():
            break
        spliced.append(folder)
    for depth, folder in enumerate(spliced):
        if depth:
            cmd += ["--perms", "0755", "--dir", str(folder)]
        below = chain[depth + 1]
        cmd += _image_entries(rootfs, folder, skip={below, *_IMAGE_MOUNTS})
    cmd += ["--perms", "1777", "--tmpfs", str(PRIVATE_TMP), "--proc", "/proc", "--dev", "/dev"]
    for folder in chain[len(spliced) : -1]:
        if folder != PRIVATE_TMP:
            cmd += ["--perms", "0755", "--dir", str(folder)]
    cmd += ["--bind", str(workdir), str(workdir)]
    for file in sorted(read_only_files):
        cmd += ["--ro-bind", str(file), str(file)]
    helpers: dict[Path, Path] = {}
    perl = shutil.which("perl", path="/usr/bin:/bin") if status_fd is not None else None
    if perl is not None:
        binds, prefix = host_helper(perl, remember=rootfs.parent.parent)
        helpers.update((dest, source) for source, dest in binds)
        argv = [*prefix, "-e", IMAGE_REPORTER, str(status_fd), *argv]
    if switch is not None:
        binds, prefix = host_helper(switch[0], remember=rootfs.parent.parent)
        helpers.update((dest, source) for source, dest in binds)
        argv = [*prefix, *switch[1:], *argv]
    for folder in sorted({p for dest in helpers for p in dest.parents if p != Path("/")}):
        cmd += ["--perms", "0755", "--dir", str(folder)]  # reachable by the run's own uid
    for dest, source in sorted(helpers.items()):
        cmd += ["--ro-bind", str(source), str(dest)]
    cmd += ["--remount-ro", "/", "--chdir", str(workdir), "--", *argv]
    return cmd


def _image_entries(rootfs: Path, folder: Path, *, skip: set[Path]) -> list[str]:
    """Binds of each entry of the image's ``folder`` at the same place (links made as links)."""
    args: list[str] = []
    source_dir = rootfs / folder.relative_to("/")
    with os.scandir(source_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            target = folder / entry.name
            if target in skip:
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), str(target)]
            elif entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                args += ["--ro-bind", entry.path, str(target)]
    return args


def host_helper(
    program: str, *, remember: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Binds and command prefix running the host's ``program`` inside an image sandbox.

    The program, each library ``ldd`` names and the dynamic loader are bound under
    :data:`IMAGE_HELPERS`; the loader runs the program with only that library folder.
    ``ldd`` costs tens of milliseconds, so its answer is kept in ``remember`` (the image
    cache, the server's own folder), checked against each file's ``stat`` before use.
    """
    memo = remember / f".host-helper-{Path(program).name}.json" if remember else None
    if memo is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            kept = json.loads(memo.read_text())
            if kept["program"] == program and all(
                list(_identity(Path(f))) == ident for f, ident in kept["files"].items()
            ):
                return [(Path(a), Path(b)) for a, b in kept["binds"]], list(kept["prefix"])
    binds, prefix = _host_helper(program)
    if memo is not None:
        files = {str(p): _identity(p) for p in [Path(program), *(src for src, _ in binds)]}
        record: dict[str, object] = {"program": program, "files": files, "prefix": prefix}
        record["binds"] = [[str(a), str(b)] for a, b in binds]
        with contextlib.suppress(OSError):
            tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
            tmp.write_text(json.dumps(record))
            tmp.replace(memo)
    return binds, prefix


def _identity(path: Path) -> list[int]:
    info = os.stat(path)
    return [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


@functools.cache
def _host_helper(program: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """:func:`host_helper` without its memory: asks ``ldd``."""
    try:
        listed = subprocess.run(
            ["ldd", program], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot list the libraries of {program}: {exc}") from exc
    libs = [Path(p) for p in re.findall(r"(/\S+) \(0x", listed)]
    loaders = [p for p in libs if p.name.startswith("ld-linux") or p.name.startswith("ld64")]
    if not loaders:
        raise EngineError(f"{program} has no dynamic loader to run it in an image")
    lib_dir = IMAGE_HELPERS / "lib"
    binds = [(Path(program).resolve(), IMAGE_HELPERS / "bin" / Path(program).name)]
    binds += [(lib.resolve(), lib_dir / lib.name) for lib in libs]
    prefix = [str(lib_dir / loaders[0].name), "--library-path", str(lib_dir), str(binds[0][1])]
    return binds, prefix


def image_program(rootfs: Path, path: str) -> Path | None:
    """Where the image's ``path`` lies under ``rootfs`` (links followed inside the image)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = rootfs.joinpath(*current, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current.append(part)
    found = rootfs.joinpath(*current)
    return found if found.is_file() else None
