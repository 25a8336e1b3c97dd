"""A real ``simyard serve`` process on a free loopback port, with its own data folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.chaos import ProcessWatch
from tests.ports import free_port


@dataclass
class Server:
    """A running server and the environment that talks to it."""

    home: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    log: Any = None
    stopped_pids: list[int] = field(default_factory=list)  # sessions of its past processes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def work_root(self) -> Path:
        """The folder below which the local executor makes its attempt folders."""
        return (self.home / "work").resolve()

    @property
    def store_root(self) -> Path | None:
        """The file store's folder; None when the store is not a folder (S3)."""
        url = self.env.get("SIMYARD_STORAGE_URL") or f"file://{self.home / 'storage'}"
        return Path(url.removeprefix("file://")).resolve() if url.startswith("file://") else None

    @property
    def model_uids(self) -> range:
        """The uids this server's models run as (when it runs as root)."""
        first = int(self.env.get("SIMYARD_MODEL_UID_FIRST", 2_000_000_000))
        return range(first, first + int(self.env.get("SIMYARD_MODEL_UID_COUNT", 65_536)))

    def cli(
        self, *args: str | Path, user: str = "admin", stdin: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``simyard`` command line as ``user`` against this server."""
        env = {**self.env, "SIMYARD_URL": self.url}
        if user in self.tokens:
            env["SIMYARD_TOKEN"] = self.tokens[user]
        return subprocess.run(
            [sys.executable, "-m", "simyard", *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def add_user(self, name: str, *, admin: bool = False) -> str:
        flags = ["--admin"] if admin else []
        done = self.cli(
            "users",
            "add",
            name,
            "--email",
            f"{name}@example.org",
            *flags,
            "--password-stdin",
            stdin="correct horse battery\n",
        )
        assert done.returncode == 0, done.stderr
        token = self.cli("tokens", "create", name).stdout.strip()
        self.tokens[name] = token
        return token

    def http(self, user: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60)

    def start(self) -> None:
        self.log = open(self.home / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simyard", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                answered = httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                answered = False
            if answered and self._listens():
                return
            time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + (self.home / "server.log").read_text())

    def _listens(self) -> bool:
        """Whether this server's own process listens on its port (not another one's)."""
        assert self.process is not None
        try:
            sockets = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(s.status == psutil.CONN_LISTEN and s.laddr.port == self.port for s in sockets)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        with_children = sig == signal.SIGKILL
        if with_children:
            self.process.kill()  # only the server: its children must notice on their own
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.stopped_pids.append(self.process.pid)  # the session it led (start_new_session)
        self.process = None
        self.log.close()

    def wait_for_run(self, run_id: int, timeout: float = 120, user: str = "admin") -> dict:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        with self.http(user) as api:
            while time.monotonic() < deadline:
                run = api.get(f"/runs/{run_id}").json()
                if run["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
                    return run  # type: ignore[no-any-return]
                time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not end\n{self.explain(run_id, user=user)}")

    def explain(self, run_id: int, user: str = "admin", log_lines: int = 60) -> str:
        """What a failing test prints: the run as the API shows it and the server log's end."""
        try:
            with self.http(user) as api:
                run = api.get(f"/runs/{run_id}").text
        except httpx.HTTPError as exc:
            run = f"(the API did not answer: {exc})"
        log = (self.home / "server.log").read_text(errors="replace").splitlines()
        return f"run {run_id}: {run}\nserver.log, last lines:\n" + "\n".join(log[-log_lines:])


@contextmanager
def logged_in(server: Server, user: str = "admin") -> Iterator[httpx.Client]:
    """A cookie-keeping client of the web pages, logged in through the login form."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token
        form = {"username": user, "password": "correct horse battery",
                "csrf_token": token.group(1), "next": "/"}  # fmt: skip
        assert client.post("/login", data=form).status_code == 303
        yield client


@pytest.fixture
def process_watch() -> Iterator[Callable[..., ProcessWatch]]:
    """Start a :class:`tests.chaos.ProcessWatch` on attempt-folder roots; stopped at the end."""
    started: list[ProcessWatch] = []

    def watch(*roots: Path) -> ProcessWatch:
        started.append(ProcessWatch(*roots).start())
        return started[-1]

    yield watch
    for each in started:
        each.stop()


MODEL_UIDS_BASE = 2_100_000_000  # above the default range's first uids, which others lease
MODEL_UIDS_EACH = 32

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"simyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server on the embedded SQLite database, then the same on PostgreSQL."""
    extra = {}
    if request.param == "postgresql":
        extra["SIMYARD_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    yield from _server(tmp_path, extra)


def _server(tmp_path: Path, extra: dict[str, str], add_admin: bool = True) -> Iterator[Server]:
    home = tmp_path / "home"
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "SIMYARD_HOME": str(home),
        "SIMYARD_KILL_GRACE": "1",
        "SIMYARD_MAX_PARALLEL": "2",
        "SIMYARD_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
        **extra,
    }
    env.pop("SIMYARD_URL", None)
    env.pop("SIMYARD_TOKEN", None)
    port = free_port()
    # A uid range of the server's own (by its port), so that what is left running as one
    # of its model uids is known to be its own, whatever else runs on the machine.
    env.setdefault("SIMYARD_MODEL_UID_FIRST", str(MODEL_UIDS_BASE + port * MODEL_UIDS_EACH))
    env.setdefault("SIMYARD_MODEL_UID_COUNT", str(MODEL_UIDS_EACH))
    srv = Server(home=home, port=port, env=env)
    if add_admin:
        srv.add_user("admin", admin=True)
    srv.start()
    yield srv
    srv.stop()
