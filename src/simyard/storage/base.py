"""The store contract: what every object-storage backend provides.

An implementer fills the private hooks (``_put``, ``_open``, ``_list``, ``_delete``,
``_stat``); the public methods check keys and keep the invariants: keys are relative
``/``-separated paths without ``..``, and a reader never sees half an object (writes
become visible whole, or not at all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from simyard.errors import SimyardError


class StorageError(SimyardError):
    """The store cannot be reached, refused the request, or has no such object."""


class ObjectNotFound(StorageError):
    """No object under that key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def check_key(key: str) -> str:
    """Refuse keys that are empty, absolute or climb out with ``..``."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "\\" in key or "\x00" in key:
        raise StorageError(f"invalid storage key {key!r}")
    return key


class Store(ABC):
    """Object storage. Backends implement the five private hooks."""

    def put(self, key: str, source: Path) -> StoredObject:
        """Store the file ``source`` under ``key`` (replacing any object there), atomically."""
        return self._put(check_key(key), source)

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object; the caller closes it."""
        return self._open(check_key(key))

    def stat(self, key: str) -> StoredObject:
        """Size of the object; ObjectNotFound when there is none."""
        return self._stat(check_key(key))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Objects whose key starts with ``prefix`` (a folder-like prefix ends in ``/``)."""
        return self._list(prefix)

    def delete(self, prefix: str) -> int:
        """Delete every object under ``prefix``; how many were deleted."""
        return self._delete(check_key(prefix))

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the object, when the backend has one (file store)."""
        return None

    def get(self, key: str, dest: Path) -> None:
        """Copy the object to the file ``dest`` (written next to it, then renamed)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        with self.open(key) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        tmp.replace(dest)

    @abstractmethod
    def _put(self, key: str, source: Path) -> StoredObject: ...

    @abstractmethod
    def _open(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def _stat(self, key: str) -> StoredObject: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[StoredObject]: ...

    @abstractmethod
    def _delete(self, prefix: str) -> int: ...
