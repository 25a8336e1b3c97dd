"""Outages: the storage (a real SeaweedFS) or the database (a real PostgreSQL) cut off
while a real server runs, and the embedded database's disk full.

The cut is a TCP relay between the server and the service (tests/tcpcut.py): connections
are refused and reset as when the service's host goes away, and come back at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import log_in
from tests.seaweed import Seaweed
from tests.tcpcut import TcpCut

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SAVER = """\
simyard: 1
name: saver
version: "1"
parameters:
  seconds: {type: number, default: 0, min: 0, max: 30}
  mib: {type: integer, default: 1, min: 1, max: 128}
tasks:
  save:
    command: [python3, save.py, "{seconds}", "{mib}"]
    outputs: [out/]
"""
SAVE = """\
import os, sys, time
os.makedirs("out")
print("working", flush=True)
time.sleep(float(sys.argv[1]))
block = bytes(range(256)) * 4096
with open("out/data.bin", "wb") as out:
    for _ in range(int(sys.argv[2])):
        out.write(block)
print("done", flush=True)
"""
DATA = bytes(range(256)) * 4096  # 1 MiB, what the model writes per mib
NO_SMTP = NotApplicable("no SMTP server in this scenario")
ON_S3 = NotApplicable("an S3 store: an object is whole or absent (the cancel test lists them)")
WatchFactory = Callable[..., ProcessWatch]


def saver_outputs(run: dict[str, Any]) -> dict[str, bytes]:
    return {"save/out/data.bin": DATA * int(run["params"]["mib"])}


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def started(server: Server, run_id: int) -> bool:
    with server.http() as api:
        tasks = api.get(f"/runs/{run_id}").json()["tasks"]
    if not tasks or tasks[0]["state"] != "running":
        return False
    return any("working" in p.read_text() for p in (server.home / "live").glob("*.log"))


def run_saver(server: Server, *params: str) -> int:
    args = [a for p in params for a in ("-p", p)]
    done = server.cli("run", "saver", *args, "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


def assert_unavailable(answer: httpx.Response, reason: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"].isdigit()
    assert answer.json()["detail"].startswith(reason), answer.json()


@pytest.fixture
def s3_server(tmp_path: Path, seaweed: Seaweed) -> Iterator[tuple[Server, TcpCut]]:
    relay = TcpCut("127.0.0.1", int(urlparse(seaweed.endpoint_url).port or 0))
    relay.start()
    env = {"SIMYARD_STORAGE_URL": f"s3://{seaweed.bucket}/outage-{uuid.uuid4().hex[:8]}",
           "SIMYARD_S3_ENDPOINT_URL": f"http://{relay.address}",
           # Registering a model holds a database transaction across its storage calls, which
           # hold up the lease's renewal while the storage is away: a long lease, so the
           # attempts do not stop as a stalled dispatcher's would.
           "SIMYARD_LEASE_TTL": "60"}  # fmt: skip
    gen = _server(tmp_path, env)
    server = next(gen)
    yield server, relay
    if relay._listener is None:
        relay.restore()
    for _ in gen:
        pass
    relay.cut()


def test_storage_outage_during_a_run_keeps_its_outputs_and_answers_503(
    s3_server: tuple[Server, TcpCut], make_model: MakeModel, process_watch: WatchFactory
) -> None:
    server, relay = s3_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(SAVER, {"save.py": SAVE})).returncode == 0
    done = server.cli("run", "saver", "--wait", "--json")
    before = json.loads(done.stdout)["id"]
    big = run_saver(server, "mib=48")
    server.wait_for_run(big)
    running = run_saver(server, "seconds=2")
    wait_until(lambda: started(server, running), 60, "the model to start")

    # A download cut off in the middle aborts the connection: an error, never a short body.
    for path in ("/outputs/save/out/data.bin", "/outputs.zip"):
        with server.http() as api, api.stream("GET", f"/runs/{big}{path}") as answer:
            assert answer.status_code == 200
            chunks = answer.iter_raw(1 << 16)
            got = [len(next(chunks))]
            relay.cut()
            with pytest.raises(httpx.HTTPError):
                got.extend(len(chunk) for chunk in chunks)
            assert sum(got) < 48 << 20
        relay.restore()
    relay.cut()

    with server.http() as api:
        assert httpx.get(server.url + "/healthz").status_code == 200  # alive
        ready = httpx.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["database"] == "ok"
        assert ready.json()["storage"].startswith("storage unreachable")
        # A download that cannot start says so before its first byte.
        assert_unavailable(api.get(f"/runs/{before}/outputs.zip"), "storage unreachable")
        answer = api.get(f"/runs/{before}/outputs/save/out/data.bin")
        assert_unavailable(answer, "storage unreachable")
        assert_unavailable(api.get(f"/runs/{before}/logs/save"), "storage unreachable")
        page = httpx.get(
            f"{server.url}/api/v1/runs/{before}/outputs.zip",
            headers={"Authorization": api.headers["Authorization"], "Accept": "text/html"},
            timeout=60,
        )
        assert page.status_code == 503
    added = server.cli("models", "add", make_model(SAVER.replace('"1"', '"2"'), {"save.py": SAVE}))
    assert added.returncode != 0
    assert "storage unreachable" in added.stderr + added.stdout

    # The model finishes during the outage; its attempt keeps retrying to store its outputs.
    log = server.home / "server.log"
    wait_until(lambda: "trying again in" in log.read_text(), 60, "the attempt to retry storing")
    time.sleep(3)  # the outage outlasts the three quick attempts that used to fail the run
    relay.restore()

    run = server.wait_for_run(running, timeout=120)
    assert run["state"] == "succeeded", run
    assert [t["attempt"] for t in run["tasks"]] == [1], "the model ran again"
    with server.http() as api:
        archive = zipfile.ZipFile(io.BytesIO(api.get(f"/runs/{running}/outputs.zip").content))
        assert archive.namelist() == ["save/out/data.bin", "ro-crate-metadata.json"]
        assert archive.read("save/out/data.bin") == DATA  # whole, not half-written
        outputs = api.get(f"/runs/{running}/outputs").json()
        assert [(o["path"], o["size"]) for o in outputs] == [("out/data.bin", len(DATA))]
    assert httpx.get(server.url + "/readyz", timeout=30).json() == {
        "status": "ready", "database": "ok", "storage": "ok"}  # fmt: skip
    assert not list((server.home / "work").glob("*/*")), "a working folder was left"
    assert_clean_outcome(
        server, [before, big, running], watch, kills=False, outputs=saver_outputs,
        states=dict.fromkeys([before, big, running], "succeeded"), smtp=NO_SMTP, store_root=ON_S3,
    )  # fmt: skip


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Server, TcpCut]]:
    relay = TcpCut("127.0.0.1", 5432)
    relay.start()
    url = postgres_url.replace("127.0.0.1:5432", relay.address)
    gen = _server(tmp_path, {"SIMYARD_DATABASE_URL": url})
    server = next(gen)
    yield server, relay
    if relay._listener is None:
        relay.restore()
    for _ in gen:
        pass
    relay.cut()


def test_database_unreachable_answers_503_then_recovers(
    pg_server: tuple[Server, TcpCut], make_model: MakeModel, process_watch: WatchFactory
) -> None:
    server, relay = pg_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(SAVER, {"save.py": SAVE})).returncode == 0
    with server.http() as api, httpx.Client(base_url=server.url) as browser:
        log_in(browser, "admin")
        relay.cut()
        assert httpx.get(server.url + "/healthz").status_code == 200
        ready = httpx.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("database unreachable")
        assert_unavailable(api.get("/runs"), "database unreachable")
        assert_unavailable(api.post("/runs", json={"model": "saver"}), "database unreachable")
        page = browser.get("/runs", headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert "database unreachable" in page.text
    relay.restore()
    run_id = run_saver(server)
    assert server.wait_for_run(run_id)["state"] == "succeeded"
    assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200
    assert_clean_outcome(server, [run_id], watch, kills=False, outputs=saver_outputs,
                         states={run_id: "succeeded"}, smtp=NO_SMTP)  # fmt: skip


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_sqlite_disk_full_answers_503_then_recovers(
    tmp_path: Path, tiny_disk: Path, make_model: MakeModel, process_watch: WatchFactory
) -> None:
    gen = _server(tmp_path, {"SIMYARD_DATABASE_URL": f"sqlite:///{tiny_disk / 'simyard.db'}"})
    server = next(gen)
    watch = process_watch(server.work_root)
    created = []
    try:
        assert server.cli("models", "add", make_model(SAVER, {"save.py": SAVE})).returncode == 0
        filler = fill(tiny_disk)
        ready = httpx.get(server.url + "/readyz", timeout=30).json()
        assert ready["database"] == "database disk full"
        answers = []
        with server.http() as api:
            for _ in range(40):  # the write-ahead log may still have room for a few
                answer = api.post("/runs", json={"model": "saver", "params": {"mib": 1}})
                answers.append(answer.status_code)
                if answer.status_code == 201:
                    created.append(answer.json()["id"])
                if answer.status_code != 201:
                    assert_unavailable(answer, "database disk full")
                    break
        assert answers[-1] == 503, answers
        filler.unlink()
        run_id = run_saver(server)
        assert server.wait_for_run(run_id)["state"] == "succeeded"
        assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200
        ids = [*created, run_id]
        assert_clean_outcome(server, ids, watch, kills=False, outputs=saver_outputs,
                             states=dict.fromkeys(ids, "succeeded"), smtp=NO_SMTP)  # fmt: skip
    finally:
        for _ in gen:
            pass


def test_a_cancel_while_storing_waits_out_no_outage_and_leaves_nothing_half_written(
    s3_server: tuple[Server, TcpCut],
    make_model: MakeModel,
    seaweed: Seaweed,
    process_watch: WatchFactory,
) -> None:
    server, relay = s3_server
    watch = process_watch(server.work_root)
    assert server.cli("models", "add", make_model(SAVER, {"save.py": SAVE})).returncode == 0
    # The model works 2 s before it writes: the storage is cut before storing begins (with
    # no pause the outputs were at times stored before the cut, and nothing was retried).
    run_id = run_saver(server, "mib=8", "seconds=2")
    wait_until(lambda: started(server, run_id), 60, "the model to start")
    relay.cut()
    log = server.home / "server.log"
    wait_until(lambda: "trying again in" in log.read_text(), 60, "the attempt to retry storing")
    with server.http() as api:
        assert api.post(f"/runs/{run_id}/cancel").status_code == 200  # needs no storage
    run = server.wait_for_run(run_id, timeout=60)  # not after the storage retries ran out
    assert run["state"] == "cancelled", run
    assert run["error"], run
    relay.restore()
    wait_until(lambda: not list((server.home / "work").glob("*/*")), 30, "the folder to go")
    prefix = urlparse(server.env["SIMYARD_STORAGE_URL"]).path.strip("/") + "/"
    listed = seaweed.client().list_objects_v2(Bucket=seaweed.bucket, Prefix=prefix)
    outputs = [o for o in listed.get("Contents", []) if "/outputs/" in o["Key"]]
    assert all(o["Size"] == 8 << 20 for o in outputs), outputs  # none half-written
    with server.http() as api:
        assert api.get(f"/runs/{run_id}/outputs").json() == []  # a cancelled run keeps none
    assert_clean_outcome(
        server, [run_id], watch, kills=False, states={run_id: "cancelled"}, smtp=NO_SMTP,
        outputs=NotApplicable("a cancelled run keeps no output"), store_root=ON_S3,
    )  # fmt: skip
