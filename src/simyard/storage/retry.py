"""A store that waits out outages: each operation is retried with backoff for a while.

The worker side uses it (see :func:`simyard.wiring.make_executor`): a task whose model
has finished keeps its outputs in its working folder until they are stored, however
long the storage is away (up to ``SIMYARD_STORAGE_RETRY_FOR``), instead of failing the
attempt at once and running the model again. A missing object is an answer, not an
outage: it is never retried.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from simyard.storage.base import ObjectNotFound, StorageError, Store, StoredObject

log = logging.getLogger("simyard.storage")

T = TypeVar("T")
FIRST_WAIT = 0.5
MAX_WAIT = 10.0
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EIO}

# Set while an attempt runs: once it is cancelled, a failing operation is not retried.
_abandon: ContextVar[threading.Event | None] = ContextVar("simyard_storage_abandon", default=None)


@contextmanager
def abandoned_when(cancelled: threading.Event) -> Iterator[None]:
    """Within this block, stop retrying (raise the last error) once ``cancelled`` is set:
    a cancelled attempt does not wait for the storage to come back."""
    token = _abandon.set(cancelled)
    try:
        yield
    finally:
        _abandon.reset(token)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` may go away by waiting: the store unreachable, refusing, or full."""
    if isinstance(exc, ObjectNotFound):
        return False
    if isinstance(exc, StorageError):
        return not str(exc).startswith("invalid storage key")
    return isinstance(exc, OSError) and exc.errno in FULL


class RetryingStore(Store):
    """``inner``, with every operation retried for up to ``retry_for`` seconds (waits of
    0.5 s doubling up to 10 s) while it fails in a way that may pass."""

    def __init__(self, inner: Store, retry_for: float) -> None:
        self.inner = inner
        self.retry_for = retry_for

    def __repr__(self) -> str:
        return f"RetryingStore({self.inner!r}, retry_for={self.retry_for})"

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def retried(self, what: str, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_for
        wait = FIRST_WAIT
        cancelled = _abandon.get() or threading.Event()
        while True:
            try:
                return call()
            except (StorageError, OSError) as exc:
                left = deadline - time.monotonic()
                if not transient(exc) or left <= 0 or cancelled.is_set():
                    raise
                log.warning("storage: %s failed (%s); trying again in %.1f s", what, exc, wait)
                if cancelled.wait(min(wait, left)):
                    raise
                wait = min(wait * 2, MAX_WAIT)

    def put(self, key: str, source: Path) -> StoredObject:
        return self.retried(f"storing {key}", lambda: self.inner.put(key, source))

    def put_many(self, pairs: Iterable[tuple[str, Path]]) -> list[StoredObject]:
        pairs = list(pairs)
        many = getattr(self.inner, "put_many", None)
        if many is None:
            return [self.put(key, source) for key, source in pairs]
        return self.retried(f"storing {len(pairs)} files", lambda: list(many(pairs)))

    def open(self, key: str) -> BinaryIO:
        return self.retried(f"reading {key}", lambda: self.inner.open(key))

    def stat(self, key: str) -> StoredObject:
        return self.retried(f"looking up {key}", lambda: self.inner.stat(key))

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return iter(self.retried(f"listing {prefix}", lambda: [*self.inner.list(prefix)]))

    def delete(self, prefix: str) -> int:
        return self.retried(f"deleting {prefix}", lambda: self.inner.delete(prefix))

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def get(self, key: str, dest: Path) -> None:
        self.retried(f"fetching {key}", lambda: self.inner.get(key, dest))

    # The hooks are never reached: every public method goes to ``inner``.
    def _put(self, key: str, source: Path) -> StoredObject:
        return self.inner.put(key, source)

    def _open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def _stat(self, key: str) -> StoredObject:
        return self.inner.stat(key)

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        return self.inner.list(prefix)

    def _delete(self, prefix: str) -> int:
        return self.inner.delete(prefix)
