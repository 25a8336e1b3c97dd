"""Model bundles: a model folder packed into one reproducible tar, named by its content hash.

The same folder always gives the same bytes (sorted members, fixed owners and times),
so the hash identifies the content and ``(name, version)`` can be checked for changes.
Workers unpack each bundle once into a cache folder named by its hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from simyard.errors import EngineError

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


def unpack_bundle(bundle: Path, cache_root: Path, content_hash: str) -> Path:
    """The folder holding the unpacked bundle, unpacking it once per hash (atomically)."""
    target = cache_root / content_hash
    if target.is_dir():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{content_hash[:12]}-"))
    try:
        with tarfile.open(bundle) as tar:
            tar.extractall(tmp, filter="data")
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                path = Path(root) / name
                if not path.is_symlink():
                    os.chmod(path, path.stat().st_mode & 0o555)  # the cache never changes
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # another worker won the race: use theirs
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EngineError(f"cannot unpack model bundle {content_hash[:12]}: {exc}") from exc
    return target
