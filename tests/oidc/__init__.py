"""A real OpenID Connect provider for the single sign-on tests: the npm package
``oidc-provider`` (OpenID-certified), run by Node from this folder on a free loopback port.

Its packages install into ``tests/oidc/node_modules`` from the pinned lock file; CI does it
up front with ``npm ci --prefix tests/oidc``, and :func:`install` does it on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import free_port

HERE = Path(__file__).parent
CLIENT_ID = "simyard-test"
CLIENT_SECRET = "a-test-client-secret-of-no-value"  # the test provider's own, of no value


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def settings(self) -> dict[str, str]:
        """The SIMYARD_* settings of a server that signs people in here."""
        return {
            "SIMYARD_OIDC_ISSUER": self.issuer,
            "SIMYARD_OIDC_CLIENT_ID": self.client_id,
            "SIMYARD_OIDC_CLIENT_SECRET": self.client_secret,
        }


def install() -> None:
    """``npm install`` into tests/oidc/node_modules unless it is there already."""
    if (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the SSO tests need Node.js 20+ and npm (apt-get install -y nodejs npm)")
    subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)


@contextmanager
def run_provider(
    *, redirect_uri: str, accounts: dict[str, dict[str, Any]], log: Path
) -> Iterator[Provider]:
    """The provider with one client (``redirect_uri``) and ``accounts`` (login -> claims)."""
    install()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the SSO tests need Node.js 20+ (apt-get install -y nodejs)")
    port = free_port()
    provider = Provider(issuer=f"http://127.0.0.1:{port}")
    env = {
        **os.environ,
        "NODE_ENV": "development",
        "OIDC_PORT": str(port),
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REDIRECT_URI": redirect_uri,
        "OIDC_ACCOUNTS": json.dumps(accounts),
    }
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [node, "provider.js"], cwd=HERE, env=env, stdout=output, stderr=output
        )
        try:
            _wait_until_ready(provider, process, log)
            yield provider
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(provider: Provider, process: subprocess.Popen[bytes], log: Path) -> None:
    discovery = provider.issuer + "/.well-known/openid-configuration"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(discovery, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the OpenID Connect provider did not start:\n" + log.read_text())
