"""Build OCI images on this machine for tests, with no registry.

:func:`tiny_image` copies a few host programs and the libraries ``ldd`` names into a
fresh ``umoci`` layout; :func:`crafted_image` writes a layout by hand around one layer
tar (for hostile entries no tool would make); :func:`debian_image` runs ``mmdebstrap``
with this machine's apt sources and caches the result under ~/.cache/simyard-tests,
keyed by the package list.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

CACHE = Path(os.environ.get("SIMYARD_TEST_CACHE", Path.home() / ".cache" / "simyard-tests"))
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}{done.stdout}"
    return done.stdout


def host_files(programs: Iterable[str]) -> list[Path]:
    """The programs and every library they load (from ldd), as host paths."""
    found: list[Path] = []
    for program in programs:
        found.append(Path(program))
        found += [Path(p) for p in re.findall(r"(/\S+) \(0x", run("ldd", program))]
    return list(dict.fromkeys(found))


def tiny_image(
    dest: Path,
    *,
    programs: Iterable[str] = ("/bin/dash", "/usr/bin/cat", "/usr/bin/ls"),
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    fmt: str = "oci-archive",
) -> Path:
    """An image of host programs (``/bin/sh`` is dash) and ``files``; written as ``fmt``.

    ``fmt``: ``oci-archive`` or ``docker-archive`` (a tar at ``dest``) or ``oci`` (a
    layout folder at ``dest``).
    """
    work = dest.parent / f".{dest.name}-build"
    layout, bundle = work / "layout", work / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:t", bundle)
    rootfs = bundle / "rootfs"
    for path in host_files(programs):
        target = rootfs / str(path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path.resolve(), target)
    for name in ("bin", "tmp", "etc", "root"):
        (rootfs / name).mkdir(exist_ok=True)
    if (rootfs / "bin" / "dash").exists():
        (rootfs / "bin" / "sh").symlink_to("dash")
    for rel, text in (files or {}).items():
        target = rootfs / rel.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if text.startswith("#!"):
            target.chmod(0o755)
    run("umoci", "repack", "--image", f"{layout}:t", bundle)
    config = [f"--config.env={k}={v}" for k, v in (env or {}).items()]
    if workdir:
        config.append(f"--config.workingdir={workdir}")
    if config:
        run("umoci", "config", "--image", f"{layout}:t", *config)
    run("umoci", "gc", "--layout", layout)
    if fmt == "oci":
        run("skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:t", f"oci:{dest}:t")
    else:
        run("skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:t", f"{fmt}:{dest}")
    shutil.rmtree(work)
    return dest


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layer_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    return info, b"x" if kind == tarfile.REGTYPE else b""


def crafted_image(dest: Path, layer: bytes) -> Path:
    """An OCI layout at ``dest`` (a folder) whose one layer is the tar ``layer``."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}
    ).encode()  # fmt: skip
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(dest, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(dest, layer)}],
    }
    top = _blob(dest, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **top}]}  # fmt: skip
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


def debian_image(packages: Iterable[str], *, dest: Path | None = None) -> tuple[Path, float]:
    """An oci-archive of a Debian root holding only ``packages`` (and what they need).

    Made by ``mmdebstrap --variant=extract`` from this machine's apt sources and cached
    under :data:`CACHE` by the package list; returns (the archive, seconds it took now).
    """
    names = sorted(packages)
    key = hashlib.sha256(" ".join(names).encode()).hexdigest()[:16]
    cached = CACHE / f"debian-{key}.oci.tar"
    started = time.monotonic()
    if not cached.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        work = CACHE / f".debian-{key}-build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        rootfs_tar = work / "rootfs.tar"
        run("mmdebstrap", "--quiet", "--variant=extract", f"--include={','.join(names)}",
            "--format=tar", "bookworm", rootfs_tar, DEBIAN_SOURCES)  # fmt: skip
        layout = work / "layout"
        run("umoci", "init", "--layout", layout)
        run("umoci", "new", "--image", f"{layout}:t")
        run("umoci", "raw", "add-layer", "--image", f"{layout}:t", _without_setid(rootfs_tar))
        run(
            "skopeo",
            "--insecure-policy",
            "copy",
            "-q",
            f"oci:{layout}:t",
            f"oci-archive:{work / 'out.tar'}",
        )
        os.replace(work / "out.tar", cached)
        shutil.rmtree(work)
    took = time.monotonic() - started
    if dest is None:
        return cached, took
    shutil.copy(cached, dest)
    return dest, took


def _without_setid(rootfs_tar: Path) -> Path:
    """The rootfs tar with setuid/setgid bits and device nodes taken out (what simyard refuses)."""
    out = rootfs_tar.with_name("layer.tar")
    with tarfile.open(rootfs_tar) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if member.ischr() or member.isblk():
                continue
            member.name = member.name.removeprefix("./") or "."
            if member.name == ".":
                continue
            member.mode &= 0o1777
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    return out


HEAT_F90 = """\
program heat
  implicit none
  logical :: host_compiler
  character(len=64) :: greeting
  integer :: i
  real :: t
  inquire(file='/usr/bin/gfortran', exist=host_compiler)
  call get_environment_variable('GREETING', greeting)
  t = 0.0
  do i = 1, 10
    t = t + 0.5 * i
  end do
  open(10, file='result.txt')
  write(10, '(A,F8.2)') 'temperature ', t
  close(10)
  print '(A,L1)', 'host gfortran visible: ', host_compiler
  print '(A,A)', 'greeting: ', trim(greeting)
end program heat
"""


def gfortran_image(dest: Path) -> tuple[Path, float]:
    """A Debian image with only libgfortran5 (and its needs) and a compiled Fortran program
    at /opt/model/heat (the image's WorkingDir; Env GREETING); cached like
    :func:`debian_image`. Returns (``dest``, seconds the making took now)."""
    started = time.monotonic()
    base, _took = debian_image(["libgfortran5"])
    key = hashlib.sha256(HEAT_F90.encode() + base.name.encode()).hexdigest()[:16]
    cached = CACHE / f"gfortran-{key}.oci.tar"
    if not cached.is_file():
        work = CACHE / f".gfortran-{key}-build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / "heat.f90").write_text(HEAT_F90)
        run("gfortran", "-O1", "-o", work / "heat", work / "heat.f90")
        layer = work / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("opt", "opt/model"):
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.add(work / "heat", "opt/model/heat")
        layout = work / "layout"
        run("skopeo", "--insecure-policy", "copy", "-q", f"oci-archive:{base}", f"oci:{layout}:t")
        run("umoci", "raw", "add-layer", "--image", f"{layout}:t", layer)
        config = ["--config.workingdir=/opt/model", "--config.env=GREETING=hello from Debian"]
        config.append("--config.env=PATH=/usr/bin:/bin")
        run("umoci", "config", "--image", f"{layout}:t", *config)
        out = work / "out.tar"
        run("skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:t", f"oci-archive:{out}")
        os.replace(out, cached)
        shutil.rmtree(work)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(cached, dest)
    return dest, time.monotonic() - started
