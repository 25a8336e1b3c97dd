"""``pip install .`` has none of the extras: the server must start without them.

The embedded default (the local executor, SQLite, the file store) needs no Dask, no
boto3, no Authlib; a module that imported one at its top once stopped ``simyard serve
--demo`` on a clean install. Here the server runs with every extra made unimportable.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ports import free_port

EXTRAS = ("distributed", "dask", "dask_jobqueue", "dask_kubernetes", "dask_cloudprovider",
          "boto3", "botocore", "authlib", "psycopg", "apprise", "pandas")  # fmt: skip

SERVE_WITHOUT_EXTRAS = f"""
import runpy, sys

class NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an extra, not installed)")

sys.meta_path.insert(0, NoExtras())
sys.argv = ["simyard", *sys.argv[1:]]
runpy.run_module("simyard", run_name="__main__")
"""


def test_the_embedded_default_serves_without_any_extra(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "SIMYARD_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITHOUT_EXTRAS, "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        if server.poll() is not None:
            output = server.communicate()[0]
            raise AssertionError(f"the server stopped: {output[-3000:]}")
        assert answer is not None
        assert answer.status_code == 200, answer.text
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
