"""Safe unpacking: every archive attack is refused by name, and a refusal leaves nothing behind."""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from simyard.errors import UnsafeArchive
from simyard.manifest.archives import inspect_archive, safe_unpack


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """Where an archive is unpacked: a folder that does not exist yet, inside ``work/``."""
    (tmp_path / "work").mkdir()
    (tmp_path / "uploads").mkdir()
    return tmp_path / "work" / "out"


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (links not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def entry(name: str, data: bytes = b"", **fields: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def make_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def refused(archive: Path, dest: Path, **limits: Any) -> str:
    """Unpack ``archive``, expect a refusal, check nothing was written anywhere; the message."""
    root = dest.parents[1]
    before = tree(root)
    with pytest.raises(UnsafeArchive) as info:
        safe_unpack(archive, dest, **limits)
    assert tree(root) == before
    return str(info.value)


# --------------------------------------------------------------------------- happy paths


def test_zip_is_unpacked_with_its_folders(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(
        tmp_path / "uploads/b.zip", {"a.txt": b"alpha", "sub/": b"", "sub/b.txt": b"beta"}
    )

    files = safe_unpack(archive, dest)

    assert sorted(files) == [dest / "a.txt", dest / "sub/b.txt"]
    assert (dest / "sub/b.txt").read_bytes() == b"beta"
    assert tree(dest.parent) == {"out", "out/a.txt", "out/sub", "out/sub/b.txt"}


def test_tar_gz_is_unpacked_with_an_inner_symlink_and_times_kept(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tar.gz",
        [
            entry("data/", type=tarfile.DIRTYPE, mode=0o755),
            entry("data/depth.csv", b"x,y\n", mtime=1_600_000_000),
            entry("latest", type=tarfile.SYMTYPE, linkname="data/depth.csv"),
        ],
    )

    files = safe_unpack(archive, dest)

    assert files == [dest / "data/depth.csv"]
    assert (dest / "latest").is_symlink()
    assert (dest / "latest").read_bytes() == b"x,y\n"
    assert (dest / "data/depth.csv").stat().st_mtime == 1_600_000_000


def test_unpacked_files_get_plain_permissions(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tar",
        [entry("run.sh", b"#!/bin/sh\n", mode=0o4777), entry("data", b"1", mode=0o666)],
        mode="w",
    )

    safe_unpack(archive, dest)

    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) & ~0o755 == 0  # no setuid, no o+w
    assert (dest / "run.sh").stat().st_mode & stat.S_IXUSR
    assert stat.S_IMODE((dest / "data").stat().st_mode) & ~0o644 == 0


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_every_tar_compression_is_read_by_content_not_name(
    tmp_path: Path, dest: Path, mode: str
) -> None:
    archive = make_tar(tmp_path / "uploads/upload", [entry("a.txt", b"alpha")], mode=mode)

    assert safe_unpack(archive, dest, filename="whatever.bin") == [dest / "a.txt"]


def test_an_existing_folder_is_replaced_on_success(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    archive = make_zip(tmp_path / "uploads/b.zip", {"new.txt": b"new"})

    safe_unpack(archive, dest)

    assert tree(dest) == {"new.txt"}
    assert tree(dest.parent) == {"out", "out/new.txt"}


def test_an_existing_folder_is_kept_untouched_on_refusal(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    archive = make_zip(tmp_path / "uploads/b.zip", {"ok.txt": b"1", "../evil": b"x"})

    refused(archive, dest)

    assert (dest / "old.txt").read_text() == "old"


def test_inspect_checks_without_writing(tmp_path: Path, dest: Path) -> None:
    good = make_zip(tmp_path / "uploads/good.zip", {"a.txt": b"alpha"})
    bad = make_zip(tmp_path / "uploads/bad.zip", {"../evil": b"x"})
    before = tree(tmp_path)

    inspect_archive(good)
    with pytest.raises(UnsafeArchive, match=r"bathy\.zip: member '\.\./evil' has '\.\.'"):
        inspect_archive(bad, filename="bathy.zip")

    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- paths


def test_zip_slip_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/b.zip", {"ok.txt": b"1", "../evil": b"x"})

    message = refused(archive, dest)

    assert (
        message == "b.zip: member '../evil' has '..' in its path (it would land outside the folder)"
    )


def test_dotdot_inside_a_tar_path_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry("sub/../../evil", b"x")])

    assert "member 'sub/../../evil' has '..'" in refused(archive, dest)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_absolute_path_is_refused(tmp_path: Path, dest: Path, kind: str) -> None:
    if kind == "zip":
        archive = make_zip(tmp_path / "uploads/b.zip", {"/etc/x": b"x"})
    else:
        archive = make_tar(tmp_path / "uploads/b.tgz", [entry("/etc/x", b"x")])

    assert refused(archive, dest).endswith("member '/etc/x' has an absolute path")


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "sub/../.."])
def test_tar_symlink_leading_outside_is_refused(tmp_path: Path, dest: Path, target: str) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tgz", [entry("link", type=tarfile.SYMTYPE, linkname=target)]
    )

    message = refused(archive, dest)

    assert message.startswith("b.tgz: member 'link' is a symbolic link")
    assert repr(target) in message


def test_tar_symlink_escaping_through_another_symlink_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    # 'a/..' looks like the top folder, but 'a' is the top folder itself, so it is its parent.
    archive = make_tar(
        tmp_path / "uploads/b.tgz",
        [
            entry("a", type=tarfile.SYMTYPE, linkname="."),
            entry("l", type=tarfile.SYMTYPE, linkname="a/.."),
        ],
    )

    assert "member 'l'" in refused(archive, dest)


def test_tar_member_written_through_a_symlink_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tgz",
        [
            entry("sub/", type=tarfile.DIRTYPE),
            entry("d", type=tarfile.SYMTYPE, linkname="sub"),
            entry("d/x.txt", b"x"),
        ],
    )

    assert refused(archive, dest).endswith("member 'd/x.txt' lies inside the symbolic link 'd'")


def test_zip_symlink_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "uploads/b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../etc/passwd")

    assert refused(archive, dest) == (
        "b.zip: member 'link' is a symbolic link (links are not allowed in zip files)"
    )


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "missing.txt"])
def test_tar_hardlink_to_anything_but_an_earlier_member_is_refused(
    tmp_path: Path, dest: Path, target: str
) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tgz",
        [entry("a.txt", b"a"), entry("hard", type=tarfile.LNKTYPE, linkname=target)],
    )

    assert f"member 'hard' is a hard link to {target!r}" in refused(archive, dest)


def test_tar_hardlink_to_an_earlier_member_becomes_a_copy(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(
        tmp_path / "uploads/b.tgz",
        [entry("a.txt", b"alpha"), entry("b.txt", type=tarfile.LNKTYPE, linkname="a.txt")],
    )

    safe_unpack(archive, dest)

    (dest / "b.txt").write_text("changed")
    assert (dest / "a.txt").read_text() == "alpha"


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_tar_device_files_and_fifos_are_refused(tmp_path: Path, dest: Path, kind: bytes) -> None:
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry("dev", type=kind)])

    assert refused(archive, dest) == "b.tgz: member 'dev' is a device file or fifo"


# --------------------------------------------------------------------------- sizes and counts


def test_too_many_zip_members_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/b.zip", {f"f{i}": b"" for i in range(6)})

    assert refused(archive, dest, max_files=5) == "b.zip: more than 5 members (the limit)"


def test_too_many_tar_members_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry(f"f{i}") for i in range(6)])

    assert refused(archive, dest, max_files=5) == "b.tgz: more than 5 members (the limit)"


def test_a_highly_compressed_member_over_the_byte_limit_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_zip(tmp_path / "uploads/bomb.zip", {"big": bytes(2 * 2**20)})
    assert archive.stat().st_size < 10_000

    message = refused(archive, dest, max_bytes=2**20)

    assert message == "bomb.zip: member 'big' unpacks to more than the limit of 1.0 MiB"


def test_a_zip_member_expanding_over_100_times_is_refused_as_a_bomb(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_zip(tmp_path / "uploads/bomb.zip", {"ok.txt": b"hello", "zeros": bytes(2**21)})

    message = refused(archive, dest)  # far under the 4 GiB byte limit

    assert message.startswith("bomb.zip: member 'zeros' expands ")
    assert message.endswith(
        "times its compressed size of 2.0 KiB (more than 100 times is refused as a likely "
        "archive bomb)"
    )


def test_a_tar_gz_expanding_over_100_times_its_size_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry("a.txt", b"1"), entry("z", bytes(2**21))])

    message = refused(archive, dest)

    assert message.startswith("b.tgz: member 'z' makes the archive expand to more than 100 times")
    assert message.endswith("(refused as a likely archive bomb)")


def test_hard_link_copies_count_against_the_ratio(tmp_path: Path, dest: Path) -> None:
    data = os.urandom(256 * 2**10)  # incompressible: the tar is about as big as its members
    copies = [entry(f"copy{i}", type=tarfile.LNKTYPE, linkname="a") for i in range(300)]
    archive = make_tar(tmp_path / "uploads/b.tar", [entry("a", data), *copies], mode="w")

    message = refused(archive, dest)

    assert message.startswith("b.tar: member 'copy")
    assert "makes the archive expand to more than 100 times" in message


def test_a_small_file_of_zeros_is_not_refused_for_its_ratio(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/a.zip", {"zeros": bytes(2**20)})  # 1 MiB: the floor

    assert [p.name for p in safe_unpack(archive, dest)] == ["zeros"]


def test_the_ratio_limit_can_be_raised(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/a.zip", {"zeros": bytes(2**21)})

    assert [p.name for p in safe_unpack(archive, dest, max_ratio=5000)] == ["zeros"]


def test_a_zip_bomb_lying_about_its_size_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/bomb.zip", {"big": bytes(2 * 2**20)})
    data = bytearray(archive.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 100)  # the declared uncompressed sizes
    struct.pack_into("<I", data, central + 24, 100)
    archive.write_bytes(bytes(data))

    message = refused(archive, dest, max_bytes=2**20)

    assert message.startswith("bomb.zip is not a readable zip or tar archive")


def test_bytes_really_written_count_against_the_limit(tmp_path: Path, dest: Path) -> None:
    # A hard link declares no size of its own, but is unpacked as a full copy.
    copies = [entry(f"copy{i}", type=tarfile.LNKTYPE, linkname="a") for i in range(3)]
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry("a", bytes(400)), *copies])

    message = refused(archive, dest, max_bytes=1000)

    assert message == ("b.tgz: member 'copy1' expands past the limit of 1 KB for the whole archive")


# --------------------------------------------------------------------------- unreadable


@pytest.mark.parametrize(
    "content",
    [b"", b"just some text\n", os.urandom(4096), b"PK\x03\x04" + bytes(100)],
    ids=["empty", "text", "random", "zip-magic-only"],
)
def test_a_file_that_is_no_archive_is_refused(tmp_path: Path, dest: Path, content: bytes) -> None:
    archive = tmp_path / "uploads/b.zip"
    archive.write_bytes(content)

    assert refused(archive, dest).startswith("b.zip is not a readable zip or tar archive (")


def test_a_truncated_tar_gz_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "uploads/b.tgz", [entry("a", os.urandom(50_000))])
    archive.write_bytes(archive.read_bytes()[:20_000])

    assert refused(archive, dest).startswith("b.tgz is not a readable zip or tar archive (")


def test_a_zip_with_corrupt_data_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/b.zip", {"a.txt": b"hello world " * 1000})
    data = bytearray(archive.read_bytes())
    start = data.find(b"a.txt") + len("a.txt")  # the compressed data follows the local header
    data[start + 10 : start + 30] = bytes(20)
    archive.write_bytes(bytes(data))

    assert refused(archive, dest).startswith("b.zip is not a readable zip or tar archive (")


def test_a_tar_of_the_current_folder_unpacks_without_its_dot(tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "model"
    (source / "bin").mkdir(parents=True)
    (source / "bin/lake").write_text("#!/bin/sh\n")
    (source / "bin/lake").chmod(0o755)
    archive = tmp_path / "uploads/model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=".")  # names are ./bin/lake, as `tar -C model .` writes them

    assert safe_unpack(archive, dest) == [dest / "bin/lake"]
    assert os.access(dest / "bin/lake", os.X_OK)


def test_the_ratio_limit_can_be_lifted(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "uploads/a.zip", {"empty": b"", "zeros": bytes(2**21)})

    assert len(safe_unpack(archive, dest, max_ratio=math.inf)) == 2
