"""Pick the store named by ``SIMYARD_STORAGE_URL``: ``file:///path`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from simyard.errors import SimyardError
from simyard.storage.base import Store
from simyard.storage.file import FileStore


def file_store_root(url: str) -> Path | None:
    """The folder of a ``file://`` store, None for any other kind."""
    parsed = urlparse(url)
    return Path(parsed.netloc + parsed.path) if parsed.scheme == "file" else None


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """The store for ``url``; ``endpoint_url`` points an ``s3://`` store at a non-AWS server."""
    root = file_store_root(url)
    if root is not None:
        return FileStore(root)
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        from simyard.storage.s3 import S3Store  # boto3 is an optional extra

        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)
    raise SimyardError(f"unsupported storage URL {url!r}: use file:///path or s3://bucket[/prefix]")
