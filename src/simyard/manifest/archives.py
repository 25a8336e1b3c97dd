"""Unpack an uploaded zip or tar archive so that it can neither escape, link out nor explode.

Every member is checked here — its name, type, links, the member count and the bytes it
really expands to — instead of trusting ``zipfile``/``tarfile`` extraction, whose rules
differ between Python versions. An archive bomb is refused two ways: by the bytes it
really expands to (``max_bytes``), and by how far it expands beyond its own size
(``max_ratio``): a zip member, or the archive as a whole, that unpacks to more than
:data:`MIN_RATIO_CHECKED_BYTES` and more than ``max_ratio`` times its compressed size is
refused as soon as it crosses that line, before the rest is read. Real data sets rarely
compress 100-fold; the zeros of a bomb compress about 1000-fold. Members are written by
this module with plain permissions (0644, or 0755 for executables); nothing of the
archive's owner, setuid bits or world-writable modes survives. Extraction goes into a
hidden folder next to the destination that is renamed into place only once every member
succeeded, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import lzma
import math
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from simyard.errors import UnsafeArchive
from simyard.manifest.units import format_size

DEFAULT_MAX_BYTES = 4 * 2**30
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_RATIO = 100  # unpacked bytes per compressed byte, for a member or the whole archive
MIN_RATIO_CHECKED_BYTES = 2**20  # below this, any ratio is allowed (a small file of zeros is fine)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or the end record of an empty zip
_CHUNK = 2**20
_LINK_HOPS = 40  # the kernel's own limit on following symbolic links
_DIRECTORY_BYTES_PER_MEMBER = 8192  # a generous central-directory entry (header + long name)
# What a corrupt or truncated archive raises while it is read (bz2 raises a bare OSError).
_READ_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, tarfile.TarError, zlib.error)
_READ_ERRORS += (lzma.LZMAError, EOFError, OSError, ValueError, NotImplementedError, OverflowError)


@dataclass
class _Member:
    name: str  # as written in the archive, for messages
    kind: str  # file | dir | symlink | hardlink
    size: int  # the uncompressed size the archive declares
    executable: bool
    mtime: float | None
    open: Callable[[], IO[bytes]]
    target: str = ""  # link target, as written
    compressed: int | None = None  # the bytes it takes in the archive (zip; a tar is one stream)
    tarinfo: tarfile.TarInfo | None = None


def inspect_archive(
    archive: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    filename: str | None = None,
) -> None:
    """Run every check of :func:`safe_unpack` (reading all data) without writing anything.

    Raises :class:`~simyard.errors.UnsafeArchive` naming the offending member.
    """
    _Extraction(filename or archive.name, _Limits(max_bytes, max_files, max_ratio), None).run(
        archive
    )


def safe_unpack(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    filename: str | None = None,
) -> list[Path]:
    """Unpack a zip or tar (plain, gz, bz2, xz) archive into ``dest``; return its regular files.

    ``dest`` appears complete or not at all; an existing ``dest`` is replaced only on
    success. Raises :class:`~simyard.errors.UnsafeArchive` for a member with an absolute
    path or ``..``, a link leading outside, a device file or fifo, more than
    ``max_files`` members, more than ``max_bytes`` unpacked, a member or archive expanding
    more than ``max_ratio`` times its compressed size, or an unreadable archive.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.unpack-"))
    try:
        limits = _Limits(max_bytes, max_files, max_ratio)
        files = _Extraction(filename or archive.name, limits, tmp).run(archive)
        tmp.chmod(0o755)  # mkdtemp makes it private; the unpacked folder is an ordinary one
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest / rel for rel in files]


def _replace(tmp: Path, dest: Path) -> None:
    if not os.path.lexists(dest):
        tmp.rename(dest)
        return
    aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    dest.rename(aside / "old")
    try:
        tmp.rename(dest)
    except OSError:
        (aside / "old").rename(dest)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@dataclass(frozen=True)
class _Limits:
    max_bytes: int
    max_files: int
    max_ratio: float


class _Extraction:
    """One pass over an archive's members: check each, and write it when ``root`` is set."""

    def __init__(self, label: str, limits: _Limits, root: Path | None) -> None:
        self.label, self.root = label, root
        self.max_bytes, self.max_files, self.max_ratio = (
            limits.max_bytes,
            limits.max_files,
            limits.max_ratio,
        )
        self.archive_size = 0
        self.kinds: dict[str, str] = {}  # normalised path -> file | dir | symlink
        self.links: dict[str, str] = {}  # symlink path -> its target
        self.sizes: dict[str, int] = {}  # file path -> bytes it holds
        self.count = self.declared = self.expanded = 0

    def run(self, archive: Path) -> list[str]:
        self.archive_size = archive.stat().st_size
        with _open_members(archive, self.label, self.max_files) as members:
            for member in members:
                self.add(member)
        for path, target in self.links.items():
            if self.escapes(path):  # checked at the end: a later link may redirect an earlier one
                raise self.refuse(
                    path, f"is a symbolic link leading outside the folder ({target!r})"
                )
        return list(self.sizes)

    def refuse(self, name: str, reason: str) -> UnsafeArchive:
        return UnsafeArchive(f"{self.label}: member {name!r} {reason}")

    def add(self, member: _Member) -> None:
        self.count += 1
        if self.count > self.max_files:
            raise UnsafeArchive(f"{self.label}: more than {self.max_files} members (the limit)")
        path = self.normalise(member.name, member.name)
        if not path:  # "./", the archive's own top folder
            return
        self.declared += member.size
        if self.declared > self.max_bytes:
            limit = format_size(self.max_bytes)
            raise self.refuse(member.name, f"unpacks to more than the limit of {limit}")
        self.check_ratio(member.name, member.size, member.compressed)
        if path in self.kinds and not (member.kind == "dir" == self.kinds[path]):
            raise self.refuse(member.name, "clashes with another member of the same name")
        try:
            self.make_parents(path, member.name)
            linked = self.check_link(path, member)
            if member.tarinfo is not None and self.root is not None:
                try:  # a second opinion: Python's own rules for safe tar extraction
                    tarfile.data_filter(member.tarinfo, str(self.root))
                except tarfile.FilterError as exc:  # its message shows server paths: not shown
                    raise self.refuse(member.name, f"is refused ({type(exc).__name__})") from None
            if member.kind == "dir":
                self.make_dir(path)
            elif member.kind == "symlink":
                self.kinds[path], self.links[path] = "symlink", member.target
                if self.root is not None:
                    os.symlink(member.target, self.root / path)
            else:
                self.add_file(path, member, linked)
        except OSError as exc:  # read errors are already UnsafeArchive; this one is a write
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the server's trouble, not the archive's
                raise
            raise self.refuse(member.name, f"cannot be written ({exc.strerror})") from None

    def normalise(self, name: str, member: str) -> str:
        if "\x00" in name or "\\" in name:
            raise self.refuse(member, "has a backslash or NUL byte in its path")
        if name.startswith("/"):
            raise self.refuse(member, "has an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, "has '..' in its path (it would land outside the folder)")
        return "/".join(parts)

    def make_parents(self, path: str, name: str) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            kind = self.kinds.get(prefix)
            if kind == "symlink":  # writing through a link could land anywhere it points
                raise self.refuse(name, f"lies inside the symbolic link {prefix!r}")
            if kind == "file":
                raise self.refuse(name, f"lies inside the file {prefix!r}")
            if kind is None:
                self.make_dir(prefix)

    def make_dir(self, path: str) -> None:
        if self.kinds.setdefault(path, "dir") == "dir" and self.root is not None:
            (self.root / path).mkdir(mode=0o755, exist_ok=True)

    def check_link(self, path: str, member: _Member) -> str:
        """For a hard link, the earlier file it copies; a symbolic link must stay inside."""
        target = member.target
        if member.kind == "hardlink":
            try:
                linked = self.normalise(target, member.name)
            except UnsafeArchive:
                linked = ""
            if self.kinds.get(linked) != "file":
                reason = f"is a hard link to {target!r}, not a file earlier in the archive"
                raise self.refuse(member.name, reason)
            return linked
        if member.kind == "symlink":
            if not target or "\x00" in target or target.startswith("/"):
                raise self.refuse(
                    member.name, f"is a symbolic link to an absolute path ({target!r})"
                )
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if resolved == ".." or resolved.startswith("../"):
                raise self.refuse(member.name, f"is a symbolic link leading outside ({target!r})")
        return ""

    def add_file(self, path: str, member: _Member, linked: str) -> None:
        mode = 0o755 if member.executable else 0o644
        if member.kind == "hardlink":  # copied: the link's target is a file met earlier
            self.count_bytes(self.sizes[linked], member.name)
            self.kinds[path], self.sizes[path] = "file", self.sizes[linked]
            if self.root is not None:
                shutil.copyfile(self.root / linked, self.root / path, follow_symlinks=False)
                os.chmod(self.root / path, mode)
            return
        self.kinds[path] = "file"
        if self.root is None:
            self.sizes[path] = self.copy(member.open, None, member)
            return
        target = self.root / path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(target, flags, mode), "wb") as out:
            self.sizes[path] = self.copy(member.open, out, member)
        if member.mtime is not None:
            with contextlib.suppress(OSError, ValueError, OverflowError):
                os.utime(target, (member.mtime, member.mtime))

    def copy(
        self, open_source: Callable[[], IO[bytes]], out: BinaryIO | None, member: _Member
    ) -> int:
        copied = 0
        try:
            source = open_source()
        except _READ_ERRORS as exc:
            raise _unreadable(self.label, exc) from None
        with source:
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except _READ_ERRORS as exc:
                    raise _unreadable(self.label, exc) from None
                if not chunk:
                    return copied
                # Count what really comes out: the declared sizes may lie.
                self.count_bytes(len(chunk), member.name)
                copied += len(chunk)
                self.check_ratio(member.name, copied, member.compressed)
                if out is not None:
                    out.write(chunk)

    def count_bytes(self, n: int, name: str) -> None:
        self.expanded += n
        if self.expanded > self.max_bytes:
            limit = format_size(self.max_bytes)
            raise self.refuse(name, f"expands past the limit of {limit} for the whole archive")
        self.check_ratio(name, 0, None)

    def check_ratio(self, name: str, size: int, compressed: int | None) -> None:
        """Refuse a member of ``size`` bytes (``compressed`` in the archive, when known), or
        the archive so far, expanding more than ``max_ratio`` times: a likely archive bomb."""
        if self.max_ratio == math.inf:
            return
        if compressed is not None and size > max(
            MIN_RATIO_CHECKED_BYTES, self.max_ratio * compressed
        ):
            ratio = size / max(compressed, 1)
            reason = (
                f"expands {ratio:.0f} times its compressed size of {format_size(compressed)} "
                f"(more than {self.max_ratio:g} times is refused as a likely archive bomb)"
            )
            raise self.refuse(name, reason)
        total = max(self.expanded, self.declared)
        if total > max(MIN_RATIO_CHECKED_BYTES, self.max_ratio * self.archive_size):
            reason = (
                f"makes the archive expand to more than {self.max_ratio:g} times its size of "
                f"{format_size(self.archive_size)} (refused as a likely archive bomb)"
            )
            raise self.refuse(name, reason)

    def escapes(self, path: str) -> bool:
        """Whether following the link at ``path`` (and every link on the way) leaves the folder."""
        folders = path.split("/")[:-1]
        pending = self.links[path].split("/")
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not folders:
                    return True
                folders.pop()
                continue
            folders.append(part)
            link = self.links.get("/".join(folders))
            if link is not None:
                hops += 1
                if hops > _LINK_HOPS:  # a loop: refuse rather than guess
                    return True
                folders.pop()
                pending = link.split("/") + pending
        return False


@contextlib.contextmanager
def _open_members(archive: Path, label: str, max_files: int) -> Iterator[Iterator[_Member]]:
    """The archive's members, as zip or tar chosen by content (a name can be anything)."""
    opened: zipfile.ZipFile | tarfile.TarFile
    try:
        with archive.open("rb") as fh:
            is_zip = fh.read(4) in _ZIP_MAGIC
            if is_zip:
                _check_zip_directory(fh, label, max_files)
        # Closed by the `with opened` below.
        opened = zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:*")  # noqa: SIM115
    except _READ_ERRORS as exc:
        raise _unreadable(label, exc) from None
    with opened:
        if isinstance(opened, zipfile.ZipFile):
            yield _zip_members(opened, label)
        else:
            yield _tar_members(opened, label)


def _check_zip_directory(fh: BinaryIO, label: str, max_files: int) -> None:
    # zipfile loads the whole central directory into memory on open; look at its size first.
    end_record = getattr(zipfile, "_EndRecData", None)
    end = end_record(fh) if end_record is not None else None
    if end is not None and (end[4] > max_files or end[5] > max_files * _DIRECTORY_BYTES_PER_MEMBER):
        raise UnsafeArchive(f"{label}: more than {max_files} members (the limit)")


def _zip_members(zf: zipfile.ZipFile, label: str) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        where = f"{label}: member {info.filename!r}"
        if stat.S_ISLNK(mode):  # the simplest safe rule: zip archives carry no links at all
            raise UnsafeArchive(f"{where} is a symbolic link (links are not allowed in zip files)")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchive(f"{where} is a device file, fifo or socket")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"{where} is encrypted")
        kind = "dir" if info.is_dir() else "file"
        opener = functools.partial(zf.open, info)
        yield _Member(
            info.filename,
            kind,
            info.file_size,
            bool(mode & 0o111),
            _zip_mtime(info),
            opener,
            compressed=info.compress_size,
        )


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (ValueError, OverflowError):
        return None


def _tar_members(tar: tarfile.TarFile, label: str) -> Iterator[_Member]:
    while True:
        try:
            member = tar.next()
        except _READ_ERRORS as exc:
            raise _unreadable(label, exc) from None
        if member is None:
            return
        opener = _tar_opener(tar, member)
        kinds = {"file": member.isreg(), "dir": member.isdir()}
        kinds |= {"symlink": member.issym(), "hardlink": member.islnk()}
        kind = next((k for k, is_kind in kinds.items() if is_kind), None)
        if kind is None:
            raise UnsafeArchive(f"{label}: member {member.name!r} is a device file or fifo")
        size = member.size if kind == "file" else 0
        found = _Member(member.name, kind, size, bool(member.mode & 0o111), member.mtime, opener)
        found.target, found.tarinfo = member.linkname, member
        yield found


def _tar_opener(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        data = tar.extractfile(member)
        if data is None:
            raise tarfile.ReadError(f"cannot read member {member.name!r}")
        return data

    return open_member


def _unreadable(label: str, exc: BaseException | str) -> UnsafeArchive:
    detail = str(exc)[:200] or type(exc).__name__
    return UnsafeArchive(f"{label} is not a readable zip or tar archive ({detail})")
