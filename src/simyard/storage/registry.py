"""Pick the store named by ``SIMYARD_STORAGE_URL``: ``file:///path`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from simyard.errors import SimyardError
from simyard.storage.base import Store
from simyard.storage.file import FileStore


def open_store(url: str) -> Store:
    """The store for ``url``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore(Path(parsed.netloc + parsed.path))
    raise SimyardError(f"unsupported storage URL {url!r}: use file:///path (s3:// comes later)")
