"""The S3 store: objects in one bucket below a key prefix (AWS S3, SeaweedFS, MinIO, ...).

Credentials come from the standard AWS sources (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, an instance role); ``endpoint_url``
points at a server other than AWS. The store pickles without its client, so it can
travel to Dask workers, which open their own connection with their own credentials.

Atomic visibility is S3's own: a PUT, and the CompleteMultipartUpload of a large file,
replace the object whole, so a reader gets the old or the new bytes, never a mix.
Large files go up as multipart uploads of parallel chunks; a file whose size and
sha256 (kept in the object's ``sha256`` metadata) match the stored object is not sent.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from simyard.storage.base import ObjectNotFound, StorageError, Store, StoredObject

try:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        NoCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as EndpointUnreachable,
    )
    from s3transfer.exceptions import (  # type: ignore[import-untyped]
        RetriesExceededError,
        S3DownloadFailedError,
    )
    from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]
    from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]
except ImportError:
    raise StorageError("the S3 store needs: pip install 'simyard[s3]'") from None

MiB = 1 << 20
PART_SIZE = 16 * MiB  # files from this size on go up as multipart uploads of such parts
PARALLEL_REQUESTS = 8  # per store: parts of one file, or files of one put_many
PUT_MANY_WORKERS = 16  # hashing and HEAD checks run ahead of the uploads
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
NOT_FOUND = {"NoSuchKey", "NotFound", "404"}


class S3Store(Store):
    """Objects are S3 objects named ``prefix + key`` in ``bucket``."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        if not bucket:
            raise StorageError("an S3 store needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.uploaded_bytes = 0  # bytes sent by put since this store was made (tests, metrics)
        self._lock = threading.Lock()
        self._client: Any = None
        self._transfers: Any = None
        self._bucket_seen = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        state.update(_client=None, _transfers=None, uploaded_bytes=0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix} at {self._where})"

    # -- the contract -------------------------------------------------------------------

    def _put(self, key: str, source: Path) -> StoredObject:
        size = source.stat().st_size
        with open(source, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        with self._mapped_errors(key):
            try:
                head = self._s3().head_object(Bucket=self.bucket, Key=self.prefix + key)
            except ClientError as exc:
                if _code(exc) not in NOT_FOUND:
                    raise
            else:
                if head["ContentLength"] == size and head["Metadata"].get("sha256") == digest:
                    return StoredObject(key, size)  # unchanged: nothing to send
            future = self._transfers.upload(
                str(source),
                self.bucket,
                self.prefix + key,
                extra_args={"Metadata": {"sha256": digest}},
                subscribers=[_CountBytes(self)],
            )
            future.result()
        return StoredObject(key, size)

    def _open(self, key: str) -> BinaryIO:
        with self._mapped_errors(key):
            response = self._s3().get_object(Bucket=self.bucket, Key=self.prefix + key)
        return io.BufferedReader(_ObjectReader(self, key, response), buffer_size=MiB)

    def _stat(self, key: str) -> StoredObject:
        with self._mapped_errors(key):
            try:
                head = self._s3().head_object(Bucket=self.bucket, Key=self.prefix + key)
            except ClientError as exc:
                if _code(exc) in NOT_FOUND:
                    self._check_bucket()  # a HEAD answers a bare 404 for a missing bucket too
                raise
        return StoredObject(key, int(head["ContentLength"]))

    def _list(self, prefix: str) -> Iterator[StoredObject]:
        pages = self._s3().get_paginator("list_objects_v2")
        with self._mapped_errors():
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):  # a folder marker, not an object
                        yield StoredObject(item["Key"][len(self.prefix) :], int(item["Size"]))

    def _delete(self, prefix: str) -> int:
        keys = [self.prefix + obj.key for obj in self._list(prefix)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            with self._mapped_errors():
                answer = self._s3().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if errors := answer.get("Errors"):
                first = errors[0]
                raise StorageError(
                    f"cannot delete {len(errors)} objects, e.g. {first.get('Key')!r}: "
                    f"{first.get('Code')} {first.get('Message', '')}".rstrip()
                )
        return len(keys)

    # -- beyond the contract: faster paths the engine uses when a store has them --------

    def get(self, key: str, dest: Path) -> None:
        """Copy the object to ``dest`` with parallel ranged GETs, all of one object version.

        The download goes to a temporary file next to ``dest`` that is renamed at the end.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            with self._mapped_errors(key):
                self._s3()
                try:
                    self._transfers.download(self.bucket, self.prefix + key, str(dest)).result()
                    return
                except S3DownloadFailedError:
                    # replaced between two parts (each part names the first one's ETag)
                    if attempt == 2:
                        raise StorageError(f"{key} was replaced while being read") from None

    def put_many(self, pairs: Iterable[tuple[str, Path]]) -> list[StoredObject]:
        """``put`` each ``(key, source)`` pair, many at once; the results in the same order."""
        self._s3()  # one client for all the threads
        items = list(pairs)
        with ThreadPoolExecutor(max_workers=min(PUT_MANY_WORKERS, len(items) or 1)) as pool:
            return list(pool.map(lambda pair: self.put(*pair), items))

    def close(self) -> None:
        """Let go of the connections and threads (a later call opens new ones)."""
        with self._lock:
            if self._transfers is not None:
                self._transfers.shutdown()
            if self._client is not None:
                self._client.close()
            self._client = self._transfers = None

    # -- plumbing ------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return str(self._client.meta.endpoint_url) if self._client is not None else "AWS S3"

    def _s3(self) -> Any:
        """The boto3 client, made on first use (and again after unpickling)."""
        with self._lock:
            if self._client is None:
                config = Config(
                    max_pool_connections=PUT_MANY_WORKERS + PARALLEL_REQUESTS,
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=120,
                    s3={"addressing_style": "path"} if self.endpoint_url else None,
                )
                session = boto3.session.Session()
                region = session.region_name or ("us-east-1" if self.endpoint_url else None)
                self._client = session.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=region, config=config
                )
                transfer = TransferConfig(
                    multipart_threshold=PART_SIZE,
                    multipart_chunksize=PART_SIZE,
                    max_request_concurrency=PARALLEL_REQUESTS,
                )
                self._transfers = TransferManager(self._client, transfer)
            return self._client

    def _ranged_get(self, key: str, start: int, etag: str) -> Any:
        """The body from byte ``start`` on, of the version whose ETag is ``etag``."""
        with self._mapped_errors(key):
            response = self._s3().get_object(
                Bucket=self.bucket, Key=self.prefix + key, Range=f"bytes={start}-", IfMatch=etag
            )
        return response["Body"]

    def _check_bucket(self) -> None:
        if self._bucket_seen:
            return
        try:
            self._s3().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in NOT_FOUND | {"NoSuchBucket"}:
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {self._where}"
                ) from None
            return  # may lack the right to ask; the object is missing all the same
        self._bucket_seen = True

    @contextmanager
    def _mapped_errors(self, key: str | None = None) -> Iterator[None]:
        """Turn botocore's exceptions into one-line StorageErrors (never with secrets)."""
        try:
            yield
        except RetriesExceededError as exc:
            raise self._error(exc.last_exception, key) from exc
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from exc

    def _error(self, exc: Exception, key: str | None) -> StorageError:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.bucket!r} does not exist at {self._where}")
            if code in ACCESS_DENIED:
                return StorageError("access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            if code in NOT_FOUND and key is not None:
                return ObjectNotFound(key)
            if code == "PreconditionFailed" and key is not None:
                return StorageError(f"{key} was replaced while being read")
            message = exc.response.get("Error", {}).get("Message", "")
            return StorageError(f"S3 at {self._where} refused: {code} {message}".rstrip())
        if isinstance(exc, NoCredentialsError):
            return StorageError("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, EndpointUnreachable):
            return StorageError(f"cannot reach {self._where}")
        return StorageError(f"S3 request to {self._where} failed: {exc}")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _CountBytes(BaseSubscriber):  # type: ignore[misc]
    """Adds the bytes of an upload to the store's ``uploaded_bytes``."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        with self.store._lock:
            self.store.uploaded_bytes += bytes_transferred


class _ObjectReader(io.RawIOBase):
    """One version of an object: a streaming GET that a seek turns into a ranged GET.

    The ranged GET names the ETag of the first answer, so a reader never mixes the
    bytes of two versions: a replaced object fails the read instead.
    """

    def __init__(self, store: S3Store, key: str, response: dict[str, Any]) -> None:
        self._store, self._key = store, key
        self._size = int(response["ContentLength"])
        self._etag = str(response["ETag"])
        self._body: Any = response["Body"]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        if base + offset != self._pos:
            self._drop_body()
            self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        if self._body is None:
            self._body = self._store._ranged_get(self._key, self._pos, self._etag)
        with self._store._mapped_errors(self._key):
            data = self._body.read(len(buffer))
        if not data:
            raise StorageError(f"{self._key}: the object ended after {self._pos} bytes")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(8 * MiB):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._drop_body()
        super().close()

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
