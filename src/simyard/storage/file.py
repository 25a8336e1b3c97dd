"""The file store: objects as files below one folder (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from simyard.engine.workdir import clone_file
from simyard.storage.base import ObjectNotFound, Store, StoredObject


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
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.unlink()
            if not clone_file(source, tmp):
                shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)  # stored objects never change in place
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
