"""Caches shared between runs: each entry made once, frozen, sealed, and checked before every use.

SPEC.md ("Security model"): a cache shared between runs is immutable once made and
verified before use. An entry that a run read from a tampered cache would run someone
else's code in that run (a planted ``json.py`` in an unpacked bundle is imported by the
next run of that model), so every shared cache goes through :class:`SealedCache`; this
module is the one home of the rule.

How an entry is made: ``make(folder)`` fills a fresh temporary folder (the bundle cache
checks the tar's sha256 against the content hash while unpacking it); the folder is then
frozen (write bits off every file, folders 0555), renamed into place (so no reader ever
sees half an entry) and sealed.

Why a seal instead of hashing the whole tree before each run: a model of some gigabytes
would be read in full for every run. The seal records, for every entry of the tree, its
relative path, type, mode, owner, size, inode, ``st_ctime_ns`` and (files) its sha256. The
check before each use compares only the ``lstat`` of each entry with the seal:

- ``st_ctime_ns`` cannot be set back by any user. A write, chmod, chown, link or
  rename changes the ctime of the file, and adding, removing or renaming an entry
  changes the ctime (and the entry list) of its folder.
- A file whose ctime alone moved (same inode, size and mode) is re-hashed and the
  seal renewed when its content still matches (a chown, which also moves the ctime,
  is caught by the owner). This is the common harmless case: the
  engine hardlinks a large cached file into a working directory (the sandbox mounts it
  read-only there), and a link count change moves the ctime.
- Any other difference (an entry added, removed or replaced, a mode, owner, size or
  inode changed, a missing or unreadable seal) discards the entry (made writable, removed)
  and makes it again.

Forging a seal that matches a tampered tree needs the inode and ctime of the forged
files, which a blind write cannot learn; whoever can also stat and read the data folder
as the server's user holds its database and secret key already.

Concurrency: making and re-making an entry happen under a per-entry ``flock``, so two
processes meeting an absent entry at once make it once; the common path (seal matches)
takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from simyard.errors import EngineError

SEAL_VERSION = 1
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
FROZEN_DIR_MODE = 0o555
_NO_WRITE_BITS = 0o555  # also drops setuid, setgid and sticky bits

# One sealed entry: type, mode, uid, gid, size, inode, ctime in ns, sha256 (files; "" otherwise).
SealRecord = tuple[str, int, int, int, int, int, int, str]


class SealedCache:
    """A folder of immutable entries named by key (a content hash), verified before each use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str, make: Callable[[Path], None]) -> Path:
        """The verified folder of ``key``, made with ``make(folder)`` when absent or tampered."""
        if not _KEY.fullmatch(key):
            raise EngineError(f"not a cache key: {key!r}")
        target, seal_path = self.root / key, self.root / f"{key}.seal"
        if self._drifted_files(key) == []:
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(key):
            drifted = self._drifted_files(key)
            if drifted is not None and self._renew_seal(key, drifted):
                return target
            self._discard(key)
            folder = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}-new-"))
            try:
                make(folder)
                digests = freeze(folder)
                folder.rename(target)
            except BaseException:
                remove_tree(folder)
                raise
            _write_seal(seal_path, key, seal_of(target, digests))
        return target

    def _drifted_files(self, key: str) -> list[str] | None:
        """Files whose ctime alone moved ([] when the tree matches its seal); None: no match."""
        sealed = _read_seal(self.root / f"{key}.seal", key)
        if sealed is None:
            return None
        try:
            found = scan(self.root / key)
        except OSError:
            return None
        if found.keys() != sealed.keys():
            return None
        drifted = []
        for rel, info in found.items():
            *identity, ctime_ns, _digest = sealed[rel]
            if list(_identity(info)) != identity:
                return None
            if info.st_ctime_ns != ctime_ns:
                if identity[0] != "file":
                    return None
                drifted.append(rel)
        return drifted

    def _renew_seal(self, key: str, drifted: list[str]) -> bool:
        """Re-hash the drifted files; renew the seal when each still holds its sealed content."""
        if not drifted:
            return True
        seal_path, target = self.root / f"{key}.seal", self.root / key
        sealed = _read_seal(seal_path, key)
        if sealed is None:
            return False
        try:
            if any(file_sha256(target / rel) != sealed[rel][-1] for rel in drifted):
                return False
            digests = {rel: record[-1] for rel, record in sealed.items() if record[0] == "file"}
            _write_seal(seal_path, key, seal_of(target, digests))
        except OSError:
            return False
        return self._drifted_files(key) == []

    def _discard(self, key: str) -> None:
        """Remove the entry, its seal and any half-made folder left by a crash."""
        (self.root / f"{key}.seal").unlink(missing_ok=True)
        target = self.root / key
        if target.exists() or target.is_symlink():
            aside = self.root / f".{key}-stale-{uuid.uuid4().hex}"
            target.rename(aside)
        for leftover in self.root.glob(f".{key}-*"):
            remove_tree(leftover)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        fd = os.open(self.root / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _identity(info: os.stat_result) -> tuple[str, int, int, int, int, int]:
    """What no harmless use of a frozen entry changes: type, mode, owner, size, inode."""
    mode = stat.S_IMODE(info.st_mode)
    return (_kind(info), mode, info.st_uid, info.st_gid, info.st_size, info.st_ino)


def _kind(info: os.stat_result) -> str:
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    if stat.S_ISREG(info.st_mode):
        return "file"
    if stat.S_ISLNK(info.st_mode):
        return "link"
    return "other"


def scan(folder: Path) -> dict[str, os.stat_result]:
    """``lstat`` of the folder itself (as ``.``) and of everything under it, by relative path."""
    found = {".": os.lstat(folder)}
    pending = [(folder, "")]
    while pending:
        path, prefix = pending.pop()
        with os.scandir(path) as entries:
            for item in entries:
                rel = prefix + item.name
                info = item.stat(follow_symlinks=False)
                found[rel] = info
                if stat.S_ISDIR(info.st_mode):
                    pending.append((Path(item.path), rel + "/"))
    return found


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def freeze(folder: Path) -> dict[str, str]:
    """Take every write bit off the tree (folders 0555, last); the sha256 of each file."""
    digests = {}
    folders = []
    for rel, info in scan(folder).items():
        path = folder / rel
        if stat.S_ISREG(info.st_mode):
            os.chmod(path, stat.S_IMODE(info.st_mode) & _NO_WRITE_BITS)
            digests[rel] = file_sha256(path)
        elif stat.S_ISDIR(info.st_mode):
            folders.append(path)
        elif not stat.S_ISLNK(info.st_mode):
            raise EngineError(f"a cache entry may hold only files, folders and links: {rel}")
    for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        os.chmod(path, FROZEN_DIR_MODE)
    return digests


def seal_of(folder: Path, digests: dict[str, str]) -> dict[str, SealRecord]:
    """The seal of a frozen tree, with the file digests taken when it was frozen."""
    return {
        rel: (
            *_identity(info),
            info.st_ctime_ns,
            digests.get(rel, "") if stat.S_ISREG(info.st_mode) else "",
        )
        for rel, info in scan(folder).items()
    }


def _write_seal(seal_path: Path, key: str, seal: dict[str, SealRecord]) -> None:
    fd, tmp = tempfile.mkstemp(dir=seal_path.parent, prefix=f".{seal_path.name}-")
    with os.fdopen(fd, "w") as handle:
        json.dump({"version": SEAL_VERSION, "key": key, "entries": seal}, handle)
    os.chmod(tmp, 0o444)
    os.replace(tmp, seal_path)


def _read_seal(seal_path: Path, key: str) -> dict[str, SealRecord] | None:
    try:
        data = json.loads(seal_path.read_bytes())
        if data["version"] != SEAL_VERSION or data["key"] != key:
            return None
        return {rel: tuple(record) for rel, record in data["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_tree(path: Path) -> None:
    """Remove a (possibly frozen) tree: its folders are made writable first."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            inner = os.path.join(root, name)
            if not os.path.islink(inner):
                with contextlib.suppress(OSError):
                    os.chmod(inner, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)
