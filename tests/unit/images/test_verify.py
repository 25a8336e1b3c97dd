"""Hostile layers are refused entry by entry; an ordinary root filesystem passes."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from simyard.images.reference import parse_image_ref
from simyard.images.verify import HostileImage, check_layer, check_media_type
from tests.unit.images.build import entry, layer_tar


def layer(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes], gz: bool = False) -> Path:
    data = layer_tar(list(members))
    path = tmp_path / "layer.tar"
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (entry("/etc/passwd"), "'/etc/passwd': an absolute path"),
        (entry("usr/../../etc/passwd"), "'..' climbs out"),
        (entry("dev/sda", tarfile.BLKTYPE), "'dev/sda': a device node"),
        (entry("dev/mem", tarfile.CHRTYPE), "'dev/mem': a device node"),
        (entry("usr/bin/su", mode=0o4755), "'usr/bin/su': a setuid or setgid file"),
        (entry("usr/bin/wall", mode=0o2755), "a setuid or setgid file"),
        (entry("etc/x", tarfile.SYMTYPE, link="../../../../host"), "a symbolic link leading out"),
        (entry("etc/y", tarfile.LNKTYPE, link="/etc/shadow"), "a hard link leading out"),
        (entry("etc/z", tarfile.LNKTYPE, link="../outside"), "a hard link leading out"),
    ],
)
def test_a_hostile_entry_is_refused_by_name(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], said: str
) -> None:
    path = layer(tmp_path, entry("etc/ok"), member, gz=True)
    with pytest.raises(HostileImage) as refused:
        check_layer(path, where="layer 1", max_bytes=2**20)
    assert said in str(refused.value)
    assert str(refused.value).startswith("layer 1: entry")


def test_an_ordinary_root_passes(tmp_path: Path) -> None:
    path = layer(
        tmp_path,
        entry("usr", tarfile.DIRTYPE, mode=0o755),
        entry("usr/bin/dash", mode=0o755),
        entry("bin", tarfile.SYMTYPE, link="usr/bin"),
        entry("usr/bin/sh", tarfile.SYMTYPE, link="/usr/bin/dash"),  # read inside the image
        entry("usr/lib/x", tarfile.SYMTYPE, link="../bin/dash"),
        entry("usr/bin/dash2", tarfile.LNKTYPE, link="usr/bin/dash"),
        entry("tmp", tarfile.DIRTYPE, mode=0o1777),
        entry("etc/.wh.gone"),
        entry("run/fifo", tarfile.FIFOTYPE),
    )
    facts = check_layer(path, where="layer 1", max_bytes=2**20)
    assert facts.entries == 9


def test_a_layer_past_the_size_setting_is_refused(tmp_path: Path) -> None:
    info, _ = entry("big")
    path = layer(tmp_path, (info, b"0" * 5000), gz=True)  # packed it is small
    with pytest.raises(HostileImage, match=r"unpacks to more than the limit of 4\.0 KiB"):
        check_layer(path, where="layer 2", max_bytes=4096)
    with pytest.raises(HostileImage, match=r"layer 2 is .* over the limit"):
        check_layer(path, where="layer 2", max_bytes=10)


def test_an_unreadable_layer_and_an_unknown_compression_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(HostileImage, match="is not a readable tar"):
        check_layer(path, where="layer 1", max_bytes=2**20)
    with pytest.raises(HostileImage, match="zstd"):
        check_media_type("application/vnd.oci.image.layer.v1.tar+zstd", "layer 1")
    check_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip", "layer 1")


@pytest.mark.parametrize(
    "text",
    [
        "oci-archive:env/image.tar",
        "docker-archive:image.tar",
        "oci:env/layout",
        "docker://registry.example.org:5000/group/model:1.2@sha256:" + "a" * 64,
    ],
)
def test_the_reference_forms(text: str) -> None:
    assert str(parse_image_ref(text)) == text


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("image.tar", "an image is one of"),
        ("docker://registry.example.org/model:latest", "pinned by its digest"),
        ("oci-archive:/srv/image.tar", "must be relative"),
        ("oci-archive:../image.tar", "must be relative"),
        ("oci:env/layout:tag", "give the path of the image"),
        ("containers-storage:model", "an image is one of"),
    ],
)
def test_a_bad_reference_names_the_accepted_forms(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_image_ref(text)
