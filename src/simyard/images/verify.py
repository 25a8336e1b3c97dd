"""Refuse a hostile image before anything unpacks it: every layer's tar is read entry by entry.

An image's layers are tars that ``umoci`` applies on top of each other. An image made to
harm the worker that unpacks it, or the model that runs in it, shows in those entries:

- a name that is absolute or climbs out with ``..``;
- a symbolic link whose relative target climbs above the image's root (an absolute
  target is read inside the image, whose root is the task's ``/``);
- a hard link to an absolute name or one with ``..``;
- a device node (character or block);
- a setuid or setgid file;
- a layer larger than the installation allows (packed, or all its entries together).

Each refusal names the layer and the entry. Python's :mod:`tarfile` reads plain and
gzip-compressed layers; other compressions are refused by name.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from simyard.manifest.units import format_size

PLAIN_OR_GZIP = ("tar", "tar+gzip", "tar.gzip", "diff.tar", "diff.tar.gzip")


class HostileImage(ValueError):
    """The image holds an entry no worker may unpack; the message names it."""


@dataclass(frozen=True)
class LayerFacts:
    """What a checked layer unpacks to."""

    entries: int
    unpacked_bytes: int


def check_media_type(media_type: str, where: str) -> None:
    """Refuse a layer compression that :mod:`tarfile` cannot read (zstd, ...)."""
    if not media_type.endswith(PLAIN_OR_GZIP):
        raise HostileImage(
            f"{where}: media type {media_type!r} is not supported "
            "(use uncompressed or gzip layers, e.g. skopeo copy --dest-compress-format gzip)"
        )


def check_layer(path: Path, *, where: str, max_bytes: int) -> LayerFacts:
    """Read the layer tar at ``path``; HostileImage naming the first bad entry."""
    size = path.stat().st_size
    if size > max_bytes:
        raise HostileImage(f"{where} is {format_size(size)}, over the limit of {_limit(max_bytes)}")
    total = entries = 0
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                entries += 1
                _check_entry(member, where)
                total += member.size if member.isreg() else 0
                if total > max_bytes:
                    raise HostileImage(
                        f"{where} unpacks to more than the limit of {_limit(max_bytes)}"
                    )
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, HostileImage):
            raise
        raise HostileImage(f"{where} is not a readable tar: {exc}") from None
    return LayerFacts(entries=entries, unpacked_bytes=total)


def _limit(max_bytes: int) -> str:
    return f"{format_size(max_bytes)} (SIMYARD_IMAGE_MAX_LAYER_SIZE)"


def _check_entry(member: tarfile.TarInfo, where: str) -> None:
    name = member.name
    entry = f"{where}: entry {name!r}"
    if "\x00" in name or name.startswith("/"):
        raise HostileImage(f"{entry}: an absolute path")
    norm = _normal(name)
    if norm is None:
        raise HostileImage(f"{entry}: '..' climbs out of the image")
    if member.ischr() or member.isblk():
        raise HostileImage(f"{entry}: a device node")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise HostileImage(f"{entry}: a setuid or setgid file")
    if member.issym():
        target = member.linkname
        if not target.startswith("/"):
            joined = posixpath.join(posixpath.dirname(norm), target)
            if _normal(joined) is None:
                raise HostileImage(f"{entry}: a symbolic link leading out ({target!r})")
    elif member.islnk():
        target = member.linkname
        if target.startswith("/") or _normal(target) is None:
            raise HostileImage(f"{entry}: a hard link leading out ({target!r})")


def _normal(name: str) -> str | None:
    """``name`` without ``.`` parts, or None when a ``..`` would climb above the root."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)
