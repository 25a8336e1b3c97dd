"""The worker's image cache: each image unpacked once, read-only, keyed by its digest.

An entry is a :class:`~simyard.engine.cache.SealedCache` entry (made under a lock, so a
concurrent first use unpacks once; frozen, sealed and checked before every use) holding
``rootfs/`` (unpacked by ``umoci raw unpack --rootless`` from blobs whose sha256 was
checked) and ``image.json`` (the config the task gets: ``Env``, ``WorkingDir``).

Use and eviction: a task holds a shared ``flock`` on ``.<hex>.inuse`` while it runs in
the image. After an entry is made, the least recently used entries are evicted until
the cache fits its size setting; an entry is evicted only when its exclusive lock can be
taken, so an image in use never is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from simyard.engine.cache import SealedCache, remove_tree
from simyard.errors import EngineError
from simyard.images.layout import TAG, BadLayout, ImageConfig, ImageManifest
from simyard.images.reference import DIGEST_RE
from simyard.images.tools import ImageToolFailed, ImageToolMissing, find_tool, run_tool
from simyard.storage.base import StorageError

UNPACK_TIMEOUT = 1800.0
FetchLayout = Callable[[Path], tuple[ImageManifest, ImageConfig]]


@dataclass(frozen=True)
class UnpackedImage:
    """An image ready to be a task's root: its digest, root folder and config."""

    digest: str
    rootfs: Path
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""


def _size_of(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class ImageCache:
    """Unpacked images under ``root``, at most ``max_bytes`` of them (but those in use)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._sealed = SealedCache(root)

    @contextlib.contextmanager
    def use(self, digest: str, fetch: FetchLayout) -> Iterator[UnpackedImage]:
        """The unpacked image ``digest``, held (never evicted) until the block ends.

        ``fetch(layout)`` writes a verified OCI layout of the image into the folder
        ``layout``; it is called only when the cache has no valid entry.
        """
        if not DIGEST_RE.fullmatch(digest):
            raise EngineError(f"not an image digest: {digest[:80]!r}")
        key = digest.removeprefix("sha256:")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f".{key}.inuse", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            made: list[bool] = []

            def make(folder: Path) -> None:
                made.append(True)
                _unpack(folder, key, fetch, self.root)

            entry = self._sealed.entry(key, make)
            os.utime(self.root / f".{key}.inuse")  # when last used: the LRU order
            config = json.loads((entry / "image.json").read_text())
            image = UnpackedImage(
                digest=digest,
                rootfs=entry / "rootfs",
                env=dict(config.get("env") or {}),
                working_dir=str(config.get("working_dir") or ""),
            )
            if made:
                (self.root / f".{key}.size").write_text(str(_size_of(entry)))
                self.evict()
            yield image
        finally:
            os.close(fd)

    def entries(self) -> list[tuple[str, int, float]]:
        """Each cached image: (hex digest, bytes, last use), least recently used first."""
        found = []
        for path in self.root.iterdir() if self.root.is_dir() else []:
            if path.is_dir() and DIGEST_RE.fullmatch("sha256:" + path.name):
                key = path.name
                try:
                    size = int((self.root / f".{key}.size").read_text())
                    used = os.stat(self.root / f".{key}.inuse").st_mtime
                except (OSError, ValueError):
                    size, used = _size_of(path), 0.0
                found.append((key, size, used))
        return sorted(found, key=lambda e: e[2])

    def evict(self) -> list[str]:
        """Remove least recently used images not in use until the cache fits; their digests."""
        entries = self.entries()
        total = sum(size for _key, size, _used in entries)
        evicted = []
        for key, size, _used in entries:
            if total <= self.max_bytes:
                break
            if self._evict_one(key):
                total -= size
                evicted.append("sha256:" + key)
        return evicted

    def _evict_one(self, key: str) -> bool:
        use_fd = os.open(self.root / f".{key}.inuse", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        make_fd = os.open(self.root / f".{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(use_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(make_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use, or being made
            (self.root / f"{key}.seal").unlink(missing_ok=True)
            aside = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}-evicted-"))
            os.rename(self.root / key, aside / "entry")
            remove_tree(aside)
            (self.root / f".{key}.size").unlink(missing_ok=True)
            return True
        finally:
            os.close(make_fd)
            os.close(use_fd)


def _unpack(folder: Path, key: str, fetch: FetchLayout, root: Path) -> None:
    """Fill the new entry ``folder``: the verified layout fetched, then unpacked by umoci."""
    umoci = find_tool_for_worker("umoci")
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{key}-fetch-") as scratch:
        layout = Path(scratch) / "layout"
        try:
            _manifest, config = fetch(layout)
        except (BadLayout, StorageError) as exc:
            raise EngineError(f"cannot fetch image sha256:{key[:12]}: {exc}") from None
        argv = [umoci, "raw", "unpack", "--rootless", "--image", f"{layout}:{TAG}"]
        try:
            run_tool([*argv, str(folder / "rootfs")], timeout=UNPACK_TIMEOUT)
        except ImageToolFailed as exc:
            raise EngineError(f"cannot unpack image sha256:{key[:12]}: {exc}") from None
    (folder / "image.json").write_text(json.dumps(config.as_json()))


def find_tool_for_worker(name: str) -> str:
    """The tool, or EngineError (this worker cannot run image tasks) with the install hint."""
    try:
        return find_tool(name)
    except ImageToolMissing as exc:
        raise EngineError(str(exc)) from None
