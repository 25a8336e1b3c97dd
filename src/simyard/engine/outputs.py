"""Collect a task's declared outputs from its working directory, with size and sha256."""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from simyard.engine.result import OutputFile

_GLOB_CHARS = set("*?[")


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _size_and_sha256(path: Path) -> tuple[int, str] | None:
    """Size and sha256 of the regular file at ``path``; None for anything else.

    Opened without following a final symlink and without blocking (a FIFO the model
    planted would hang the engine), then checked on the open file, so a name swapped
    since it was looked at cannot make the engine read something else.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return info.st_size, digest.hexdigest()


def _files_below(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in sorted(path.rglob("*")) if p.is_file())


def collect_outputs(workdir: Path, declared: Iterable[str]) -> list[OutputFile]:
    """Files matching the declared outputs (folders end in ``/``; globs allowed), each once.

    A symlink is followed only when it stays inside the working directory, so a model
    cannot publish a host file as its output (the engine, maybe root, reads them all).
    """
    root = workdir.resolve()
    found: dict[str, OutputFile] = {}
    for entry in declared:
        if _GLOB_CHARS & set(entry):
            matches = [Path(p) for p in sorted(glob.glob(str(workdir / entry), recursive=True))]
        else:
            matches = [workdir / entry.rstrip("/")]
        for match in matches:
            for path in _files_below(match):
                resolved = path.resolve()
                if root not in resolved.parents:
                    continue
                rel = path.relative_to(workdir).as_posix()
                if rel not in found and (measured := _size_and_sha256(resolved)) is not None:
                    found[rel] = OutputFile(rel, *measured, resolved)
    return sorted(found.values(), key=lambda f: f.path)


def missing_files(workdir: Path, required: Iterable[str]) -> list[str]:
    """The ``success_requires`` entries not in the working directory (a glob: no match)."""
    return [rel for rel in required if not _present(workdir, rel)]


def _present(workdir: Path, rel: str) -> bool:
    if _GLOB_CHARS & set(rel):
        return bool(glob.glob(rel, root_dir=workdir, recursive=True))
    return (workdir / rel).exists()
