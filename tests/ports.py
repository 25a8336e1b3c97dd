"""Free loopback ports for the servers the tests start, never handed out twice in one run.

The kernel hands any free port to whoever asks, so two xdist workers asking at the same
moment can be told the same one. The second server then cannot listen on it, and a test
that only checks that something answers on its port talks to the other worker's server
(its token unknown there: a 401). So each port handed out is claimed by a file in a
folder that every worker of the run shares (``SIMYARD_TEST_PORTS``, made by the
controlling process, see tests/conftest.py); a port already claimed is skipped.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

CLAIMS = "SIMYARD_TEST_PORTS"


def claims_folder() -> Path:
    """The run's folder of claimed ports (made by this process if none was given)."""
    folder = os.environ.get(CLAIMS)
    if not folder:
        folder = tempfile.mkdtemp(prefix="simyard-test-ports-")
        os.environ[CLAIMS] = folder
    return Path(folder)


def _claim(port: int) -> bool:
    try:
        os.close(os.open(claims_folder() / str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports, none handed out before in this run (each
    held while the others are chosen, so the kernel gives them all different)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if _claim(port):
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def free_port() -> int:
    """A free loopback port no other test of this run was given."""
    return free_ports(1)[0]
