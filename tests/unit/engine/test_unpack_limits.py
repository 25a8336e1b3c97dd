"""The engine unpacks an archive input under the same limits as the upload check."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from simyard.engine.task import EngineOptions, TaskRequest, prepare_workdir
from simyard.errors import UnsafeArchive
from simyard.manifest import load_manifest
from tests.conftest import MakeModel

MANIFEST = """\
simyard: 1
name: lake
version: "1"
inputs:
  grid:
    path: input/grid.zip
    max_size: 1KB
    unpack: input/grid/
tasks:
  run: {command: [x]}
"""


def request_with(make_model: MakeModel, tmp_path: Path, data: bytes) -> TaskRequest:
    model_dir = make_model(MANIFEST)
    archive = tmp_path / "grid.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cells.bin", data)
    return TaskRequest(
        manifest=load_manifest(model_dir),
        model_dir=model_dir,
        task="run",
        params={},
        workdir=tmp_path / "work",
        log_path=tmp_path / "log",
        inputs={"grid": archive},
    )


def test_an_archive_over_20_times_its_slots_max_size_is_refused_not_unpacked(
    make_model: MakeModel, tmp_path: Path
) -> None:
    request = request_with(make_model, tmp_path, os.urandom(30_000))

    with pytest.raises(UnsafeArchive, match=r"member 'cells\.bin' unpacks to more than the limit"):
        prepare_workdir(request, EngineOptions(sandbox="none"))
    assert not (tmp_path / "work/input/grid").exists()


def test_the_servers_limit_caps_every_slot(make_model: MakeModel, tmp_path: Path) -> None:
    request = request_with(make_model, tmp_path, os.urandom(10_000))

    with pytest.raises(UnsafeArchive, match=r"limit of 5 KB"):
        prepare_workdir(request, EngineOptions(sandbox="none", max_unpacked_bytes=5000))


def test_an_archive_within_its_limits_is_unpacked(make_model: MakeModel, tmp_path: Path) -> None:
    request = request_with(make_model, tmp_path, os.urandom(10_000))

    prepare_workdir(request, EngineOptions(sandbox="none"))

    assert (tmp_path / "work/input/grid/cells.bin").stat().st_size == 10_000
