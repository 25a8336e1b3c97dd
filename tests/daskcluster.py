"""A real Dask cluster on loopback: one ``dask scheduler`` and two ``dask worker`` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.conftest import free_port


@dataclass
class DaskCluster:
    root: Path
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3"}
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=log,
                                    env=env, start_new_session=True)  # fmt: skip

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(
            "scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
            "--port", str(self.port), "--dashboard-address", ":0", "--no-show",
        )  # fmt: skip

    def start_worker(self, name: str) -> None:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        self.workers[name] = self._spawn(
            name, "distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", "1",
            "--host", "127.0.0.1", "--dashboard-address", ":0", "--local-directory", str(folder),
            "--resources", "cpus=2", "--no-nanny",
        )  # fmt: skip

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with Client(self.address, timeout="5s") as client:
                    if len(client.scheduler_info()["workers"]) >= count:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the Dask cluster did not come up")

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
