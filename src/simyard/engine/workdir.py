"""Build a task's working directory: model files, then parameter file, inputs and upstream outputs.

A legacy model may edit any file in its folder, its own files included, so every file
the model can write is its own: cloned copy-on-write (reflink) where the filesystem can,
copied where it cannot. Only a large file that can neither be cloned nor left writable
is hardlinked, and the sandbox then mounts it read-only (see :class:`StagedFiles`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

_FICLONE = 0x40049409  # ioctl number of FICLONE (linux/fs.h)
LINK_THRESHOLD = 16 * 2**20  # below this a copy is cheap enough to always give the model its own


@dataclass
class StagedFiles:
    """What staging did: bytes copied vs. shared, and files that must stay read-only."""

    copied_bytes: int = 0
    shared_bytes: int = 0
    read_only: set[Path] = field(default_factory=set)


def clone_file(src: Path, dst: Path) -> bool:
    """Make ``dst`` a copy-on-write clone of ``src``; False when the filesystem cannot."""
    try:
        with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
            fcntl.ioctl(fdst.fileno(), _FICLONE, fsrc.fileno())
    except OSError as exc:
        dst.unlink(missing_ok=True)
        if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF):
            return False
        raise
    shutil.copymode(src, dst)
    return True


def place_file(src: Path, dst: Path, staged: StagedFiles, *, may_link: bool) -> None:
    """Put a private version of ``src`` at ``dst``, replacing whatever is there.

    ``may_link`` allows a hardlink for large files that cannot be cloned; the caller
    then has to keep the file read-only for the model (it is listed in ``staged.read_only``).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
        staged.read_only.discard(dst)
    elif dst.is_dir():
        shutil.rmtree(dst)
    size = src.stat().st_size
    if size and clone_file(src, dst):
        staged.shared_bytes += size
        return
    if may_link and size >= LINK_THRESHOLD:
        try:
            os.link(src, dst)
        except OSError:
            pass
        else:
            staged.shared_bytes += size
            staged.read_only.add(dst)
            return
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)
    staged.copied_bytes += size


def place_tree(src_dir: Path, dst_dir: Path, staged: StagedFiles, *, may_link: bool) -> None:
    """Mirror ``src_dir`` into ``dst_dir`` file by file (symlinks inside it are kept as links)."""
    for root, dirs, files in os.walk(src_dir):
        rel = Path(root).relative_to(src_dir)
        (dst_dir / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs:
            if (Path(root) / name).is_symlink():
                _copy_link(Path(root) / name, dst_dir / rel / name)
        for name in files:
            src = Path(root) / name
            if src.is_symlink():
                _copy_link(src, dst_dir / rel / name)
            else:
                place_file(src, dst_dir / rel / name, staged, may_link=may_link)


def _copy_link(src: Path, dst: Path) -> None:
    target = os.readlink(src)
    # A link that leaves the model folder would show the model host files; keep only inner ones.
    if os.path.isabs(target) or ".." in Path(target).parts:
        return
    dst.unlink(missing_ok=True)
    os.symlink(target, dst)


def inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing anything that would resolve outside ``root``."""
    path = (root / rel).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise ValueError(f"{rel!r} points outside the working directory")
    return root / rel
