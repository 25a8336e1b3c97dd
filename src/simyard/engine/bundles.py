"""Model bundles: a model folder packed into one reproducible tar, named by its content hash.

The same folder always gives the same bytes (sorted members, fixed owners and times),
so the hash identifies the content and ``(name, version)`` can be checked for changes.
Workers unpack each bundle once into a cache folder named by its hash, checking the
tar's bytes against that hash as they unpack it; the cache folder is then frozen, sealed
and checked before every use (:mod:`simyard.engine.cache`).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from simyard.engine.cache import SealedCache
from simyard.errors import EngineError
from simyard.storage.base import Store

SKIPPED_NAMES = {".git", "__pycache__", ".simyard", ".mypy_cache", ".pytest_cache"}


def _members(model_dir: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES)
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                found.append(Path(root) / name)
    return found


def make_bundle(model_dir: Path, dest_dir: Path) -> tuple[Path, str]:
    """Pack ``model_dir`` into ``dest_dir``; returns (tar file, sha256 of its bytes)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, suffix=".tar")
    digest = hashlib.sha256()
    with (
        os.fdopen(fd, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in _members(model_dir):
            rel = path.relative_to(model_dir).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
                continue
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    with open(tmp_name, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    content_hash = digest.hexdigest()
    final = dest_dir / f"{content_hash}.tar"
    os.replace(tmp_name, final)
    return final, content_hash


class _HashingReader:
    """A read-only file wrapper that hashes every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data


def _unpack_verified(bundle: Path, folder: Path, content_hash: str) -> None:
    """Unpack ``bundle`` into ``folder``, refusing it unless its bytes hash to ``content_hash``.

    The bytes are hashed while they are unpacked (one read, and nothing can swap the
    file between the check and the unpacking); a mismatch leaves ``folder`` to be removed.
    """
    try:
        with open(bundle, "rb") as raw:
            reader = _HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(folder, filter="data")
            while reader.read(1 << 20):
                pass  # the tar's end padding counts in the hash too
    except (OSError, tarfile.TarError) as exc:
        raise EngineError(f"cannot unpack model bundle {content_hash[:12]}: {exc}") from exc
    if reader.digest.hexdigest() != content_hash:
        raise EngineError(f"model bundle {content_hash[:12]} does not match its content hash")


def cached_model_dir(content_hash: str, cache_root: Path, fetch: Callable[[Path], Path]) -> Path:
    """The verified unpacked folder of a bundle, made (and re-made) in the shared cache.

    ``fetch(scratch)`` gives the path of the bundle's tar, downloading it into the
    ``scratch`` folder if it has to; it is called only when the cache must make the entry.
    """

    def make(folder: Path) -> None:
        # Named like the entry's own leftovers, so a crash mid-download is cleaned up with them.
        with tempfile.TemporaryDirectory(
            dir=cache_root, prefix=f".{content_hash}-fetch-"
        ) as scratch:
            _unpack_verified(fetch(Path(scratch)), folder, content_hash)

    return SealedCache(cache_root).entry(content_hash, make)


def stored_model_dir(*, store: Store, bundle_key: str, content_hash: str, cache_root: Path) -> Path:
    """The verified unpacked folder of a stored bundle; fetched only when the cache lacks it."""

    def fetch(scratch: Path) -> Path:
        local = store.local_path(bundle_key)
        if local is not None:
            return local
        dest = scratch / "bundle.tar"
        store.get(bundle_key, dest)
        return dest

    return cached_model_dir(content_hash, cache_root, fetch)


def unpack_bundle(bundle: Path, cache_root: Path, content_hash: str) -> Path:
    """The verified unpacked folder of the bundle file ``bundle`` (see :func:`cached_model_dir`)."""
    return cached_model_dir(content_hash, cache_root, lambda _scratch: bundle)
