"""What an unsandboxed model needs when the engine runs as root and switches to its own uid."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def open_to_all(path: Path) -> bool:
    """Whether a user of no group may reach ``path`` (every folder above it searchable)."""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in (*path.parents, path))


def model_python(sandbox: str) -> str:
    """A Python the model may run: an unsandboxed one as its own uid cannot reach /root."""
    if sandbox != "none" or os.geteuid() != 0:
        return "python3"
    for candidate in (shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"):
        if candidate and Path(candidate).is_file() and open_to_all(Path(candidate)):
            return str(Path(candidate).resolve())
    pytest.skip("no Python every user may run, for an unsandboxed model of a root engine")


@pytest.fixture
def open_work_root() -> Iterator[Path]:
    """A folder for working directories that every user may reach (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="simyard-work-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)
