"""The store contract, run against every store backend: the file store and S3 (SeaweedFS)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simyard.storage.base import ObjectNotFound, StorageError, Store
from simyard.storage.file import FileStore
from tests.seaweed import Seaweed


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path / "store")
        return
    from simyard.storage.s3 import S3Store

    server: Seaweed = request.getfixturevalue("seaweed")
    s3 = S3Store(server.bucket, f"contract-{uuid.uuid4().hex}", endpoint_url=server.endpoint_url)
    yield s3
    s3.close()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_put_then_open_gives_the_same_bytes(store: Store, tmp_path: Path) -> None:
    obj = store.put("runs/1/out/a.txt", write(tmp_path, "a", b"hello"))
    assert obj.size == 5
    with store.open("runs/1/out/a.txt") as handle:
        assert handle.read() == b"hello"
    assert store.stat("runs/1/out/a.txt").size == 5


def test_put_replaces_and_the_source_can_change_afterwards(store: Store, tmp_path: Path) -> None:
    src = write(tmp_path, "a", b"one")
    store.put("k", src)
    store.put("k", write(tmp_path, "b", b"two!"))
    src.write_bytes(b"changed")
    with store.open("k") as handle:
        assert handle.read() == b"two!"


def test_missing_object_is_object_not_found(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        store.open("nope")
    assert store.exists("nope") is False


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", "a\\b"])
def test_bad_keys_are_refused(store: Store, tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        store.put(key, write(tmp_path, "x", b"x"))


def test_list_and_delete_by_prefix(store: Store, tmp_path: Path) -> None:
    for key in ["runs/1/a", "runs/1/b/c", "runs/2/a", "runs/10/a"]:
        store.put(key, write(tmp_path, "x", key.encode()))
    assert [o.key for o in store.list("runs/1/")] == ["runs/1/a", "runs/1/b/c"]
    assert store.delete("runs/1/") == 2
    assert [o.key for o in store.list("runs/")] == ["runs/10/a", "runs/2/a"]


def test_get_copies_to_a_local_file(store: Store, tmp_path: Path) -> None:
    store.put("k", write(tmp_path, "a", b"data" * 1000))
    dest = tmp_path / "sub" / "copy.bin"
    store.get("k", dest)
    assert dest.read_bytes() == b"data" * 1000


def test_a_reader_never_sees_half_an_object(store: Store, tmp_path: Path) -> None:
    big_a = write(tmp_path, "a", b"a" * (8 << 20))
    big_b = write(tmp_path, "b", b"b" * (8 << 20))
    store.put("k", big_a)
    stop = threading.Event()
    seen: set[bytes] = set()

    def read() -> None:
        while not stop.is_set():
            with store.open("k") as handle:
                data = handle.read()
            seen.add(bytes({*data}) if len(data) == 8 << 20 else b"short")

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(10):
        store.put("k", big_b)
        store.put("k", big_a)
    stop.set()
    reader.join()
    assert seen <= {b"a", b"b"}
