"""Shared caches: frozen once made, checked before every use, re-made when tampered with."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simyard.domain.registry import model_dir_of
from simyard.domain.tables import ModelVersion
from simyard.engine import EngineOptions, TaskOutcome
from simyard.engine.bundles import cached_model_dir, make_bundle, unpack_bundle
from simyard.engine.cache import SealedCache
from simyard.engine.workorder import WorkOrder, execute_work_order
from simyard.errors import EngineError
from simyard.manifest import load_manifest
from simyard.storage.file import FileStore
from tests.conftest import MakeModel

MANIFEST = """\
simyard: 1
name: probe
version: "1"
tasks:
  run:
    command: [python3, model.py]
"""
MODEL = "import json\nimport helpers.tool\nprint('model says', json.dumps(helpers.tool.VALUE))\n"
PLANTED = "print('PLANTED CODE RAN')\ndumps = str\n"


@pytest.fixture
def model(make_model: MakeModel) -> Path:
    return make_model(MANIFEST, {"model.py": MODEL, "helpers/__init__.py": "", "helpers/tool.py":
                                 "VALUE = 42\n"})  # fmt: skip


@pytest.fixture
def stored(model: Path, tmp_path: Path) -> tuple[FileStore, ModelVersion]:
    """The model registered in a file store, as the server keeps it."""
    store = FileStore(tmp_path / "storage")
    bundle, content_hash = make_bundle(model, tmp_path / "bundles")
    key = f"bundles/{content_hash}.tar"
    store.put(key, bundle)
    version = ModelVersion(name="probe", version="1", content_hash=content_hash, bundle_key=key)
    return store, version


def tree_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a tree: its content and its owner."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_uid)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_writable(path: Path) -> None:
    path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


# Each tampering a hostile writer could do to a cached bundle, after it was made.
def add_file_at_top(folder: Path) -> None:
    make_writable(folder)
    (folder / "json.py").write_text(PLANTED)


def change_content_same_size(folder: Path) -> None:
    target = folder / "helpers" / "tool.py"
    make_writable(target)
    target.write_text("VALUE = 66\n")
    target.chmod(0o444)  # and its mode put back


def change_content_longer(folder: Path) -> None:
    target = folder / "model.py"
    make_writable(target)
    target.write_text("import json\nprint('PLANTED CODE RAN')\n")


def writable_folder_and_new_file(folder: Path) -> None:
    make_writable(folder / "helpers")
    (folder / "helpers" / "json.py").write_text(PLANTED)
    (folder / "helpers").chmod(0o555)


def replace_file_by_rename(folder: Path) -> None:
    make_writable(folder)
    (folder / "new.py").write_text("print('PLANTED CODE RAN')\n")
    os.replace(folder / "new.py", folder / "model.py")


def give_a_file_away(folder: Path) -> None:
    """A chown hands a cached file to a user (who could then write it): not harmless drift."""
    os.chown(folder / "model.py", 12345, 12345)


def remove_the_seal(folder: Path) -> None:
    add_file_at_top(folder)
    (folder.parent / f"{folder.name}.seal").unlink()


TAMPERINGS: list[Callable[[Path], None]] = [
    add_file_at_top,
    change_content_same_size,
    change_content_longer,
    writable_folder_and_new_file,
    replace_file_by_rename,
    give_a_file_away,
    remove_the_seal,
]


def test_cache_folders_and_files_are_not_writable_after_unpack(
    stored: tuple[FileStore, ModelVersion], tmp_path: Path
) -> None:
    store, version = stored
    folder = model_dir_of(version, store=store, cache_root=tmp_path / "cache")
    entries = [folder, *folder.rglob("*")]
    assert {p.name for p in entries} >= {"model.py", "helpers", "tool.py"}
    for path in entries:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o555, path
        else:
            assert mode & 0o222 == 0, path


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda t: t.__name__)
def test_tampered_bundle_is_remade_before_next_use(
    tamper: Callable[[Path], None], stored: tuple[FileStore, ModelVersion], model: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    store, version = stored
    cache_root = tmp_path / "cache"
    folder = model_dir_of(version, store=store, cache_root=cache_root)
    pristine = tree_files(folder)
    assert pristine == tree_files(model)

    tamper(folder)
    assert tree_files(folder) != pristine

    again = model_dir_of(version, store=store, cache_root=cache_root)
    assert tree_files(again) == pristine
    assert stat.S_IMODE(again.stat().st_mode) == 0o555
    assert [p.name for p in cache_root.iterdir() if p.name.startswith(".") and p.is_dir()] == []


def test_planted_module_does_not_run_in_the_next_run(
    stored: tuple[FileStore, ModelVersion], model: Path, tmp_path: Path
) -> None:
    """The reported attack: json.py planted in cache/bundles/<hash>/, then another user's run."""
    store, version = stored
    cache_root = tmp_path / "cache"

    def run_once(run_id: int) -> str:
        order = WorkOrder(
            run_id=run_id, task_run_id=run_id, task="run", attempt=1,
            manifest=load_manifest(model), bundle_key=version.bundle_key,
            bundle_hash=version.content_hash, params={},
        )  # fmt: skip
        result = execute_work_order(
            order,
            store=store,
            work_root=tmp_path / "work",
            cache_root=cache_root,
            options=EngineOptions(kill_grace=0.5),
        )
        assert result.outcome == TaskOutcome.succeeded, result.failure_reason
        assert result.log is not None
        return store.local_path(result.log.key).read_text()  # type: ignore[union-attr]

    assert "model says 42" in run_once(1)
    for tamper in (add_file_at_top, writable_folder_and_new_file):
        tamper(cache_root / version.content_hash)
        log = run_once(2)
        assert "PLANTED" not in log
        assert "model says 42" in log


def test_harmless_hardlink_keeps_the_entry_without_remaking_it(
    stored: tuple[FileStore, ModelVersion], tmp_path: Path
) -> None:
    """The engine hardlinks big cached files into working folders: that moves a ctime only."""
    store, version = stored
    cache_root = tmp_path / "cache"
    folder = model_dir_of(version, store=store, cache_root=cache_root)
    inode_before = (folder / "model.py").stat().st_ino
    os.link(folder / "model.py", tmp_path / "linked.py")
    (tmp_path / "linked.py").unlink()

    again = model_dir_of(version, store=store, cache_root=cache_root)
    assert (again / "model.py").stat().st_ino == inode_before


def test_bundle_that_does_not_match_its_hash_is_refused(
    stored: tuple[FileStore, ModelVersion], tmp_path: Path
) -> None:
    store, version = stored
    tar = store.local_path(version.bundle_key)
    assert tar is not None
    data = bytearray(tar.read_bytes())
    data[600] ^= 1  # a byte of the first member's content
    tar.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="does not match its content hash"):
        model_dir_of(version, store=store, cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache" / version.content_hash).exists()


def _unpack_in_process(bundle: Path, cache_root: Path, content_hash: str, log: Path) -> None:
    def fetch(_scratch: Path) -> Path:
        with open(log, "a") as handle:
            handle.write("made\n")
        time.sleep(0.3)  # long enough for the other processes to arrive meanwhile
        return bundle

    cached_model_dir(content_hash, cache_root, fetch)


def test_concurrent_first_use_makes_the_entry_once(model: Path, tmp_path: Path) -> None:
    bundle, content_hash = make_bundle(model, tmp_path / "bundles")
    cache_root, log = tmp_path / "cache", tmp_path / "made.log"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_unpack_in_process, args=(bundle, cache_root, content_hash, log))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert log.read_text() == "made\n"
    assert tree_files(unpack_bundle(bundle, cache_root, content_hash)) == tree_files(model)


def test_cache_refuses_a_key_that_is_not_a_plain_name(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not a cache key"):
        SealedCache(tmp_path).entry("../outside", lambda folder: None)


class RemoteLikeStore(FileStore):
    """A store with no local files (as S3): every bundle is downloaded, and counted."""

    downloads = 0

    def local_path(self, key: str) -> Path | None:
        return None

    def get(self, key: str, dest: Path) -> None:
        self.downloads += 1
        super().get(key, dest)


def test_remote_bundle_is_downloaded_only_when_the_cache_must_be_made(
    stored: tuple[FileStore, ModelVersion], model: Path, tmp_path: Path
) -> None:
    store, version = stored
    remote = RemoteLikeStore(store.root)
    cache_root = tmp_path / "cache"
    folder = model_dir_of(version, store=remote, cache_root=cache_root)
    model_dir_of(version, store=remote, cache_root=cache_root)
    assert remote.downloads == 1
    add_file_at_top(folder)
    assert tree_files(model_dir_of(version, store=remote, cache_root=cache_root)) == tree_files(
        model
    )
    assert remote.downloads == 2
    assert sorted(p.name for p in cache_root.iterdir() if not p.name.endswith(".lock")) == [
        version.content_hash,
        f"{version.content_hash}.seal",
    ]
