"""Collect a task's declared outputs from its working directory, with size and sha256."""

from __future__ import annotations

import glob
import hashlib
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


def _files_below(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in sorted(path.rglob("*")) if p.is_file())


def collect_outputs(workdir: Path, declared: Iterable[str]) -> list[OutputFile]:
    """Files matching the declared outputs (folders end in ``/``; globs allowed), each once.

    A symlink is followed only when it stays inside the working directory, so a model
    cannot publish a host file as its output.
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
                if rel not in found:
                    size = resolved.stat().st_size
                    found[rel] = OutputFile(rel, size, sha256_of(resolved), resolved)
    return sorted(found.values(), key=lambda f: f.path)


def missing_files(workdir: Path, required: Iterable[str]) -> list[str]:
    """The ``success_requires`` entries that are not in the working directory."""
    return [rel for rel in required if not (workdir / rel).exists()]
