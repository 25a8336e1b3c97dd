"""A real ``simyard serve`` for the benchmarks: own data folder, free loopback port, admin token.

Used as a context manager; it is stopped (its whole process group, if it has to come to
that) whatever ends the benchmark: the end, an exception or Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

ADMIN = "bench"
ADMIN_PASSWORD = "bench-password-1"  # a throwaway account in a temp folder
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchServer:
    """``simyard serve`` with the local executor, ``SIMYARD_MAX_PARALLEL=2``, in ``home``."""

    def __init__(self, home: Path, *, max_parallel: int = 2) -> None:
        self.home = home
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SIMYARD_")},
            "SIMYARD_HOME": str(home),
            "SIMYARD_MAX_PARALLEL": str(max_parallel),
            "SIMYARD_EXECUTOR": "local",
            "SIMYARD_CREDENTIALS_FILE": str(home / "credentials.json"),
            # The benchmark measures runs, not the per-user run limiter (120/minute by
            # default), which would refuse most of the throughput scenario's runs.
            "SIMYARD_RUN_RATE": "",
        }
        self.token = ""
        self.log_path = home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def __enter__(self) -> BenchServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m simyard ARGS`` as the admin, against this server; raises on failure."""
        env = {**self.env, "SIMYARD_URL": self.url}
        if self.token:
            env["SIMYARD_TOKEN"] = self.token
        done = subprocess.run(
            [sys.executable, "-m", "simyard", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"simyard {' '.join(args)} exited with {done.returncode}:\n{done.stderr}"
            )
        return done

    def start(self) -> None:
        """Create the admin and its token, start the server, wait for ``/healthz``."""
        self.home.mkdir(parents=True, exist_ok=True)
        email, password = "b@example.org", ADMIN_PASSWORD + "\n"
        self.cli(
            "users", "add", ADMIN, "--email", email, "--admin", "--password-stdin", stdin=password
        )
        self.token = self.cli("tokens", "create", ADMIN).stdout.strip()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "simyard", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            )
        try:
            self._wait_healthy()
        except BaseException:  # Ctrl-C while starting included: never leave it behind
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start:\n" + self.log_path.read_text())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of its process group if it does not go within 30 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def api(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for ``/api/v1`` with the admin's token."""
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

    def add_model(self, folder: Path) -> None:
        """Register the model in ``folder`` with ``simyard models add``."""
        self.cli("models", "add", str(folder))

    def log_problems(self) -> list[str]:
        """Lines of the server's own log that report an error (it logs warnings and up)."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        keys = ("Traceback", "ERROR", "Exception", "Error:")
        return [line for line in lines if any(k in line for k in keys)]
