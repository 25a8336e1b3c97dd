"""The file store: objects as files below one folder (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from simyard.engine.workdir import clone_file
from simyard.storage.base import ObjectNotFound, StorageError, Store, StoredObject


class FileStore(Store):
    """Objects are files under ``root``; a write goes to a temporary file, then is renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _put(self, key: str, source: Path) -> StoredObject:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _writing(target.parent) as tmp:
            if not clone_file(source, tmp):
                shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)  # stored objects never change in place
            tmp.replace(target)
        return StoredObject(key, target.stat().st_size)

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def _stat(self, key: str) -> StoredObject:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return StoredObject(key, path.stat().st_size)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".part-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield StoredObject(key, path.stat().st_size)

    def _delete(self, prefix: str) -> int:
        keys = [obj.key for obj in self._list(prefix)]
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        return len(keys)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


# The .part- files this process is writing: a process that must end at once (a worker
# whose server died) removes them first, so no half-written object outlives it.
_partial: set[Path] = set()
_partial_lock = threading.Lock()
_abandoned = False


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[Path]:
    """A new ``.part-`` path in ``folder`` (no file there yet), removed unless renamed."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".part-")
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    with _partial_lock:
        if _abandoned:
            raise StorageError("this process is ending: nothing more is stored")
        _partial.add(tmp)
    try:
        yield tmp
    finally:
        with _partial_lock:
            _partial.discard(tmp)
        tmp.unlink(missing_ok=True)


def abandon_writes() -> None:
    """Remove the objects this process is writing, and refuse any more: it ends now."""
    global _abandoned
    with _partial_lock:
        _abandoned = True
        for tmp in _partial:
            tmp.unlink(missing_ok=True)
        _partial.clear()
