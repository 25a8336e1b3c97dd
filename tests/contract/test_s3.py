"""What the S3 store promises beyond the contract, against a real SeaweedFS seaweed."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simyard.config import Settings
from simyard.storage.base import StorageError
from simyard.storage.registry import open_store
from simyard.storage.s3 import S3Store
from tests.seaweed import Seaweed

MiB = 1 << 20


@pytest.fixture
def store(seaweed: Seaweed) -> Iterator[S3Store]:
    s3 = S3Store(seaweed.bucket, f"s3test-{uuid.uuid4().hex}", endpoint_url=seaweed.endpoint_url)
    yield s3
    s3.close()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.mark.slow
def test_open_store_reads_bucket_and_prefix_from_the_url(seaweed: Seaweed, tmp_path: Path) -> None:
    store = open_store(f"s3://{seaweed.bucket}/deep/prefix/", endpoint_url=seaweed.endpoint_url)
    assert isinstance(store, S3Store)
    store.put("a.txt", write(tmp_path / "a", b"x"))
    listed = seaweed.client().list_objects_v2(Bucket=seaweed.bucket, Prefix="deep/prefix/")
    assert [o["Key"] for o in listed["Contents"]] == ["deep/prefix/a.txt"]


def test_settings_take_the_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMYARD_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    assert Settings().s3_endpoint_url == "http://127.0.0.1:9"


@pytest.mark.slow
def test_a_64_mib_file_goes_up_in_parallel_parts_and_comes_back_identical(
    store: S3Store, seaweed: Seaweed, tmp_path: Path
) -> None:
    source = write(tmp_path / "big", os.urandom(64 * MiB))
    assert store.put("big.bin", source).size == 64 * MiB
    head = seaweed.client().head_object(Bucket=seaweed.bucket, Key=store.prefix + "big.bin")
    assert head["ETag"].strip('"').endswith("-4")  # four 16 MiB parts
    store.get("big.bin", tmp_path / "back" / "big")
    assert sha256(tmp_path / "back" / "big") == sha256(source)
    with store.open("big.bin") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == sha256(source)


@pytest.mark.slow
def test_putting_an_unchanged_file_again_sends_no_bytes(store: S3Store, tmp_path: Path) -> None:
    source = write(tmp_path / "a", os.urandom(MiB))
    store.put("k", source)
    assert store.uploaded_bytes == MiB
    store.put("k", source)
    store.put("k", write(tmp_path / "copy", source.read_bytes()))
    assert store.uploaded_bytes == MiB
    changed = bytearray(source.read_bytes())
    changed[0] ^= 1
    store.put("k", write(tmp_path / "b", bytes(changed)))  # same size, other content
    assert store.uploaded_bytes == 2 * MiB
    with store.open("k") as handle:
        assert handle.read() == bytes(changed)


@pytest.mark.slow
def test_a_missing_bucket_is_named_in_the_error(seaweed: Seaweed, tmp_path: Path) -> None:
    store = S3Store("no-such-bucket", "p", endpoint_url=seaweed.endpoint_url)
    message = re.escape(f"bucket 'no-such-bucket' does not exist at {seaweed.endpoint_url}")
    with pytest.raises(StorageError, match=message):
        store.put("k", write(tmp_path / "a", b"x"))
    with pytest.raises(StorageError, match=message):
        store.exists("k")
    with pytest.raises(StorageError, match=message):
        store.open("k")
    with pytest.raises(StorageError, match=message):
        list(store.list(""))


@pytest.mark.slow
def test_bad_credentials_say_access_denied_without_the_secret(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-12345")
    store = S3Store(seaweed.bucket, "p", endpoint_url=seaweed.endpoint_url)
    for action in [
        lambda: store.put("k", write(tmp_path / "a", b"x")),
        lambda: store.stat("k"),
        lambda: list(store.list("")),
    ]:
        with pytest.raises(StorageError) as caught:
            action()
        assert str(caught.value) == "access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        assert "wrong-secret" not in str(caught.value)


@pytest.mark.slow
def test_an_unreachable_endpoint_says_so(seaweed: Seaweed, tmp_path: Path) -> None:
    store = S3Store(seaweed.bucket, "p", endpoint_url=seaweed.unreachable_url)
    with pytest.raises(
        StorageError, match=f"^{re.escape(f'cannot reach {seaweed.unreachable_url}')}$"
    ):
        store.put("k", write(tmp_path / "a", b"x"))


@pytest.mark.slow
def test_a_reader_of_a_multipart_object_being_replaced_gets_old_or_new_bytes(
    store: S3Store, tmp_path: Path
) -> None:
    size = 33 * MiB  # three parts
    old, new = write(tmp_path / "old", b"o" * size), write(tmp_path / "new", b"n" * size)
    store.put("k", old)
    seen: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                with store.open("k") as handle:
                    data = b"".join(iter(lambda: handle.read(MiB), b""))
                seen.append(bytes({*data}) if len(data) == size else b"short")
                store.get("k", tmp_path / "got")
                data = (tmp_path / "got").read_bytes()
                seen.append(bytes({*data}) if len(data) == size else b"short")
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(3):
        store.put("k", new)
        store.put("k", old)
    stop.set()
    reader.join()
    assert not errors
    assert seen
    assert set(seen) <= {b"o", b"n"}


@pytest.mark.slow
def test_a_seek_reads_from_the_offset_of_the_same_version(store: S3Store, tmp_path: Path) -> None:
    store.put("log.txt", write(tmp_path / "a", b"0123456789" * 1000))
    with store.open("log.txt") as handle:
        handle.seek(9995)
        assert handle.read(10) == b"56789"
        handle.seek(2)
        assert handle.read(3) == b"234"
        handle.seek(20000)
        assert handle.read(10) == b""
    with store.open("log.txt") as handle:
        store.put("log.txt", write(tmp_path / "b", b"x" * 10000))
        handle.seek(5000)
        with pytest.raises(StorageError, match="replaced while being read"):
            handle.read(10)  # the object changed: no bytes of another version


@pytest.mark.slow
def test_put_many_stores_500_small_files(store: S3Store, tmp_path: Path) -> None:
    pairs = [
        (f"many/{i:03d}.txt", write(tmp_path / f"{i}", f"file {i}".encode())) for i in range(500)
    ]
    stored = store.put_many(pairs)
    assert [obj.key for obj in stored] == [key for key, _ in pairs]
    assert len(list(store.list("many/"))) == 500
    with store.open("many/321.txt") as handle:
        assert handle.read() == b"file 321"
    sent = store.uploaded_bytes
    store.put_many(pairs)
    assert store.uploaded_bytes == sent
    assert store.delete("many/") == 500


@pytest.mark.slow
def test_the_store_pickles_without_its_client(store: S3Store, tmp_path: Path) -> None:
    store.put("k", write(tmp_path / "a", b"before"))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.prefix == store.prefix
    with copy.open("k") as handle:
        assert handle.read() == b"before"
